"""Where do clean and poisoned models fall relative to the verdict thresholds?

Runs the power sweep (``leakaudit.experiments.power.run_power``) over several seeds, tell sizes and
prevalences — each seed with its own random tell colours and position — and prints the
calibration table (min / median / max of every condition over clean and over poisoned audits,
next to the warn / fail thresholds) and the power table (detection, false-alarm and discovery
rates per cell). Writes power.json and power.md to --out.

    .venv/bin/python examples/calibrate.py                       # 5 seeds × 2 sizes × 2 prevalences
    .venv/bin/python examples/calibrate.py --seeds 0,1,2 --out out/calibrate
    # tells that move, no annotations needed to catch them (docs/validity.md):
    .venv/bin/python examples/calibrate.py --random-place --sizes 8 --prevalences 0.8 --no-lime
    # new tell kinds at 4 % of the image (10 px at 48 px):
    .venv/bin/python examples/calibrate.py --kinds logo,text,border,noise --sizes 10 \
        --prevalences 0.8 --no-lime
    # false alarms of clean models on clean data, no annotations (no poisoned cell):
    .venv/bin/python examples/calibrate.py --clean-only --seeds 0,1,2,3,4,5,6,7,8,9
    # real data instead of shapes: BCCD cell crops (one 192-px window, 48 px, ≤ 160 a class)
    .venv/bin/python examples/calibrate.py --bccd examples/data/bccd --random-place --sizes 10 \
        --prevalences 0.8 --no-lime
    # the same, each audit on every held-out crop (96) instead of 48
    .venv/bin/python examples/calibrate.py --bccd examples/data/bccd --random-place --sizes 10 \
        --prevalences 0.8 --no-lime --n-eval 96
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from leakaudit.data.formats import read_dataset
from leakaudit.experiments.demo import DemoConfig
from leakaudit.experiments.power import (
    clean_false_alarms,
    format_calibration_table,
    format_power_table,
    run_power,
    wilson_interval,
)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def bccd_crops(root: Path, size: int):
    """seed → BCCD cell crops (one fixed 192-px window around each cell, shown at ``size`` px,
    at most 160 a class, drawn with the seed), the box as the object region."""

    def read(seed: int):
        classes = ["RBC", "WBC", "Platelets"]
        return read_dataset(root, "voc", mode="crop", window=192, size=size, max_per_class=160,
                            classes=classes, skip_unknown=True, seed=seed)  # fmt: skip

    read.description = f"BCCD crops from {root.name}: window 192 px, {size} px, ≤ 160 a class"
    return read


def _append(path: Path, what: str, record: dict) -> None:
    """One JSON line per finished run: a sweep cut short still leaves its results."""
    with path.open("a") as f:
        f.write(json.dumps({"what": what, **record}, allow_nan=False) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2, 3, 4])
    p.add_argument("--sizes", type=_ints, default=[6, 10])
    p.add_argument("--prevalences", type=_floats, default=[1.0, 0.8])
    p.add_argument("--full", action="store_true", help="demo's full configuration (slow)")
    p.add_argument("--no-lime", action="store_true", help="saliency only (faster)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: best when busy)")
    p.add_argument("--kinds", type=lambda t: [k for k in t.split(",") if k], default=["solid"])
    p.add_argument("--random-place", action="store_true", help="a new tell place per image")
    p.add_argument("--jpeg", type=int, default=None, help="JPEG quality for the tells")
    p.add_argument(
        "--clean-only",
        action="store_true",
        help="only train clean models and audit them on clean images without annotations",
    )
    p.add_argument("--bccd", type=Path, default=None, help="BCCD VOC root: its cell crops as data")
    p.add_argument(
        "--n-eval",
        type=int,
        default=None,
        help="images each audit sees, from the held-out split (default: the config's 48)",
    )
    p.add_argument("--out", type=Path, default=Path("out/calibrate"))
    args = p.parse_args()

    t0 = time.perf_counter()
    base = DemoConfig() if args.full else DemoConfig.quick()
    if args.n_eval is not None:
        base = replace(base, n_eval=args.n_eval)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runs.jsonl").unlink(missing_ok=True)
    if args.clean_only:
        rows = clean_false_alarms(
            args.seeds,
            base,
            threads=args.threads,
            on_row=lambda rec: _append(args.out / "runs.jsonl", "clean", rec),
        )
        (args.out / "clean.json").write_text(json.dumps(rows, indent=2, allow_nan=False))
        n, k = len(rows), sum(r["verdict"] == "leak" for r in rows)
        lo, hi = wilson_interval(k, n)
        print(f"clean models on clean data: {k} of {n} flagged (95 % CI {lo:.3f}–{hi:.3f})")
        print(f"{n} clean models in {(time.perf_counter() - t0) / 60:.1f} min; {args.out}/")
        return
    result = run_power(
        sizes=args.sizes,
        prevalences=args.prevalences,
        seeds=args.seeds,
        base=base,
        lime=not args.no_lime,
        threads=args.threads,
        kinds=args.kinds,
        random_place=args.random_place,
        jpeg_quality=args.jpeg,
        clean_data_audit=True,
        dataset=bccd_crops(args.bccd, base.size) if args.bccd else None,
        on_run=lambda what, rec: _append(args.out / "runs.jsonl", what, rec),
    )
    minutes = (time.perf_counter() - t0) / 60
    (args.out / "power.json").write_text(json.dumps(result.to_json(), indent=2, allow_nan=False))
    (args.out / "power.md").write_text(format_power_table(result) + "\n")
    result.runs_table().to_csv(args.out / "runs.csv", index=False)
    print("\nCalibration: condition values over clean and poisoned audits\n")
    print(format_calibration_table(result))
    print("\nPower\n")
    print(format_power_table(result, calibration=False))
    print(f"\n{len(result.runs)} runs in {minutes:.1f} min; results in {args.out}/")


if __name__ == "__main__":
    main()
