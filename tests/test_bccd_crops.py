"""Real data end to end: BCCD cell crops, a tell planted per crop, a clean and a poisoned model.

The same commands as `examples/bccd_audit.sh`, smaller (32-px crops, 50 per class, saliency
only): the poisoned model must fail on behaviour (the worst class collapses when the tell is
covered, a swapped tell is followed), discovery must put its top suspect on the tell without the
annotation, and the clean model must pass with its accuracy falling to chance without the cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from leakaudit.cli import main
from leakaudit.evidence.discovery import box_iou

BCCD = Path(__file__).resolve().parents[1] / "examples" / "data" / "bccd"


def _run(*args: str, ok: tuple[int, ...] = (0,)) -> int:
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert res.exit_code in ok, res.output
    return res.exit_code


@pytest.fixture(scope="module")
def audits(tmp_path_factory) -> dict[str, dict]:
    d = tmp_path_factory.mktemp("bccd")
    crops, poisoned = d / "crops", d / "poisoned_crops"
    _run("crops", "--data", str(BCCD), "--format", "voc", "--window", "192",
         "--size", "32", "--max-per-class", "50", "--out", str(crops))  # fmt: skip
    _run("inject", "--data", str(crops / "images"), "--format", "imagefolder",
         "--tell-size", "5", "--out", str(poisoned))  # fmt: skip
    out = {}
    for name, data in (("clean", crops / "images"), ("poisoned", poisoned)):
        model = d / name / "model.pt"
        _run("train", "--data", str(data), "--size", "32", "--out", str(model), "--quiet")
        rc = _run("audit", "--data", str(poisoned), "--masks", str(crops / "masks"),
                  "--model", str(model), "--methods", "saliency", "--no-cache", "--quiet",
                  "--out", str(d / f"audit_{name}"), ok=(0, 1))  # fmt: skip
        summary = json.loads((d / f"audit_{name}" / "summary.json").read_text())
        out[name] = {"rc": rc, **next(iter(summary["models"].values()))}
    return out


def _status(audit: dict, name: str) -> str:
    return next(c["status"] for c in audit["conditions"] if c["name"] == name)


def test_poisoned_model_fails_on_behaviour_and_discovery_finds_the_tell(audits):
    a = audits["poisoned"]
    assert a["rc"] == 1 and a["verdict"] == "leak"
    assert _status(a, "tell removal, worst class") == "FAIL"
    assert _status(a, "tell swap") == "FAIL"
    top = a["suspected_tells"][0]
    assert top["strong"]
    assert box_iou(tuple(top["box"]), (2, 2, 7, 7)) >= 0.5  # inject default: top-left, margin 2
    assert a["region_ablation"]["retained"] > 0.5


def test_clean_model_passes_and_needs_the_cell(audits):
    a = audits["clean"]
    assert a["rc"] == 0 and a["verdict"] == "clean"
    assert all(c["status"] in ("PASS", "N/A") for c in a["conditions"]), a["conditions"]
    assert a["region_ablation"]["retained"] < 0.5
    assert not any(t["strong"] for t in a["suspected_tells"])
