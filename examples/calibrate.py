"""Where do clean and poisoned models fall relative to the verdict thresholds?

Runs the power sweep (``leakaudit.power.run_power``) over several seeds, tell sizes and
prevalences — each seed with its own random tell colours and position — and prints the
calibration table (min / median / max of every condition over clean and over poisoned audits,
next to the warn / fail thresholds) and the power table (detection, false-alarm and discovery
rates per cell). Writes power.json and power.md to --out.

    .venv/bin/python examples/calibrate.py                       # 5 seeds × 2 sizes × 2 prevalences
    .venv/bin/python examples/calibrate.py --seeds 0,1,2 --out out/calibrate
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from leakaudit.demo import DemoConfig
from leakaudit.power import format_calibration_table, format_power_table, run_power


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2, 3, 4])
    p.add_argument("--sizes", type=_ints, default=[6, 10])
    p.add_argument("--prevalences", type=_floats, default=[1.0, 0.8])
    p.add_argument("--full", action="store_true", help="demo's full configuration (slow)")
    p.add_argument("--no-lime", action="store_true", help="saliency only (faster)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: best when busy)")
    p.add_argument("--out", type=Path, default=Path("out/calibrate"))
    args = p.parse_args()

    t0 = time.perf_counter()
    result = run_power(
        sizes=args.sizes,
        prevalences=args.prevalences,
        seeds=args.seeds,
        base=DemoConfig() if args.full else DemoConfig.quick(),
        lime=not args.no_lime,
        threads=args.threads,
    )
    minutes = (time.perf_counter() - t0) / 60
    args.out.mkdir(parents=True, exist_ok=True)
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
