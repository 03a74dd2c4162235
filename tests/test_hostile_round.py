"""A fast slice of examples/hostile_round.py (one cheap case per group, about a minute on 2
cores): every invariant of the hostile round must hold there. The whole round:
`python examples/hostile_round.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAST = ["out_is_a_file", "summary_not_json", "cache_dir_is_a_file", "zero_byte_png",
        "option_limit_0", "model_zero_bytes"]  # fmt: skip


def test_hostile_round_fast_subset(tmp_path):
    report = tmp_path / "hostile.json"
    args = [sys.executable, str(ROOT / "examples" / "hostile_round.py"), "--json", str(report)]
    for name in FAST:
        args += ["--case", name]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    results = json.loads(report.read_text())["cases"]
    assert {r["name"] for r in results} >= set(FAST)
    failed = {r["name"]: r["problems"] for r in results if not r["ok"]}
    assert not failed and proc.returncode == 0, (failed, proc.stdout[-3000:], proc.stderr[-3000:])
