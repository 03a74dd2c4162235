"""Does the audit's memory stay flat in the number of images? (docs/scale.md, issue 11)

Builds one poisoned image folder of ``--base`` synthetic shapes at ``--side`` px (a 20-px solid
tell in 80 % of each class, no tells.json: the audit must find it by discovery), trains the
bundled ``small_cnn`` on it, then audits folders of ``--counts`` images made of copies of the
base set (hard links), each in a fresh process under GNU time, and prints the peak RSS of each
audit next to the first's. Repeats are fine here: what is measured is memory, not evidence.

    .venv/bin/python examples/memory_scale.py --counts 1000,10000 --out out/memory
    LEAKAUDIT_SPILL_MB=1000000 .venv/bin/python examples/memory_scale.py ...   # never spill

Each audit: saliency and Grad-CAM on every image, discovery, suspect tests, region ablation,
the sanity check, ``--no-cache``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def make_base(out: Path, n: int, side: int, seed: int) -> Path:
    from leakaudit.data.export import export_samples
    from leakaudit.data.synthetic import make_shapes
    from leakaudit.data.tells import TellSpec, poison

    ds = make_shapes(n, seed=seed, size=side, n_classes=3)
    ds = poison(ds, TellSpec(size=20, position="random", prevalence=0.8), seed=seed)
    res = export_samples(ds, out)
    (res.images_dir / "tells.json").unlink(missing_ok=True)  # found by discovery, not given
    return out


def replicate(base: Path, out: Path, count: int) -> None:
    """``count`` images: the base set's files linked under new names, round after round."""
    files = sorted((base / "images").rglob("*.png"))
    for k in range(count):
        src = files[k % len(files)]
        rel = src.relative_to(base / "images")
        name = f"{rel.stem}_r{k // len(files)}.png"
        for part in ("images", "masks"):
            dst = out / part / rel.parent / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(base / part / rel, dst)


def audit(folder: Path, model: Path, out: Path, side: int) -> dict:
    cmd = [str(BIN / "leakaudit"), "audit", "--data", str(folder / "images"), "--format",
           "imagefolder", "--masks", str(folder / "masks"), "--model", str(model), "--size",
           str(side), "--methods", "saliency,gradcam", "--seed", "0", "--no-cache", "--quiet",
           "--out", str(out)]  # fmt: skip
    t = time.time()
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.time() - t
    if res.returncode not in (0, 1, 3):
        raise SystemExit(f"audit failed ({res.returncode}): {res.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1))
    info = json.loads((out / "run_info.json").read_text())
    return {"rc": res.returncode, "wall_s": round(wall, 1), "peak_rss_mb": round(rss_kb / 1024),
            "phases_mb": info.get("peak_rss_mb")}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--base", type=int, default=1000)
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="out/memory")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = make_base(out / "base", args.base, args.side, args.seed)
    from leakaudit.models.train_run import train_and_save

    model = out / "model.pt"
    run = train_and_save(base / "images", "imagefolder", model, size=args.side, epochs=2,
                         seed=args.seed, progress=False)  # fmt: skip
    print(f"small_cnn on {run.n_samples} images: val accuracy {run.val_accuracy:.3f}", flush=True)
    rows = {}
    for count in [int(c) for c in args.counts.split(",")]:
        folder = out / f"n{count}"
        replicate(base, folder, count)
        rows[count] = audit(folder, model, out / f"audit_{count}", args.side)
        first = rows[next(iter(rows))]["peak_rss_mb"]
        r = rows[count]
        print(f"{count} images: exit {r['rc']}, {r['wall_s']:.0f} s, peak RSS {r['peak_rss_mb']}"
              f" MB ({r['peak_rss_mb'] / first:.2f}× the first); after each phase "
              f"{r['phases_mb']}", flush=True)  # fmt: skip
        shutil.rmtree(folder)
    spill = os.environ.get("LEAKAUDIT_SPILL_MB", "default (256)")
    (out / "memory.json").write_text(json.dumps({"spill_mb": spill, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
