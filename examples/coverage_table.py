"""Pool the annotation-free results of several power sweeps (docs/validity.md, fourth round).

Reads the ``power.json`` each ``examples/calibrate.py --out DIR`` wrote and prints, per run and
pooled per tell kind: whether the suspected-tell conditions alone failed the poisoned model,
the classes that rely on their tell (annotated removal, ``power.relied_classes``), the top
suspect's coverage of all tells and of the relied-on tells, the same over all strong
suspects, and by the judged suspect (the one whose tests the verdict shows; sweeps from the
ninth round on).

    .venv/bin/python examples/coverage_table.py out/validity/n1 out/validity/n2
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from leakaudit.experiments.power import wilson_interval


def _f(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    args = ap.parse_args()
    runs = []
    for d in args.dirs:
        runs += json.loads((d / "power.json").read_text())["runs"]
    print("| kind | seed | detected w/o annotations | relied-on classes | coverage | "
          "coverage, relied-on | strong, relied-on | judged, relied-on |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    pooled: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(runs, key=lambda r: (r["kind"], r["seed"])):
        b = r["blind"]["poisoned"]
        pooled[r["kind"]].append(b)
        print(f"| {r['kind']} | {r['seed']} | {'yes' if b['leak'] else 'no'} | "
              f"{b.get('relied_classes')} | {_f(b['coverage'])} | "
              f"{_f(b.get('coverage_relied'))} | "
              f"{_f(b.get('coverage_relied_strong'))} | "
              f"{_f(b.get('coverage_relied_judged'))} |")  # fmt: skip
    print()
    for kind, bs in pooled.items():
        relied = [b for b in bs if b.get("relied_classes")]
        cov = [b["coverage_relied"] >= 0.8 for b in relied]
        det = [bool(b["leak"]) for b in relied]
        judged = [b.get("coverage_relied_judged") for b in relied]
        judged = [v for v in judged if v is not None]
        lo, hi = wilson_interval(sum(cov), len(cov)) if cov else (math.nan, math.nan)
        print(f"{kind}: {len(bs)} runs, {len(relied)} with a relied-on tell; of those, the top "
              f"suspect covers ≥ 80 % of relied-on tells in {sum(cov)} (95 % CI {lo:.2f}–{hi:.2f})"
              f", detected without annotations in {sum(det)}; all runs: coverage ≥ 80 % in "
              f"{sum(b['coverage'] >= 0.8 for b in bs)}, detected in "
              f"{sum(bool(b['leak']) for b in bs)}")  # fmt: skip
        if judged:
            jc = [v >= 0.8 for v in judged if not math.isnan(v)]
            lo, hi = wilson_interval(sum(jc), len(relied))
            print(
                f"  the judged suspect covers ≥ 80 % of relied-on tells in {sum(jc)} of "
                f"{len(relied)} (95 % CI {lo:.2f}–{hi:.2f}; none judged: not covered)"
            )


if __name__ == "__main__":
    main()
