"""``compare_audits``: paired differences per method and audited metric, matched by image id,
plus correctness — known answers on hand-made per-sample tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leakaudit.auditing.model_audit import ModelAudit, score_columns
from leakaudit.auditing.pipeline import compare_audits


def _audit(name: str, rows: list[dict]) -> ModelAudit:
    cols = ["id", "label", "pred", "method", *score_columns(), "confidence", "p_true"]
    table = pd.DataFrame(rows, columns=cols)
    return ModelAudit(name, 1.0, 1.0, table, {}, [], "clean", {}, {})


def _rows(method: str, outside: float, shift: float, right: int) -> list[dict]:
    return [
        {"id": f"x{i}", "label": 0, "pred": 0 if i < right else 1, "method": method,
         "outside_mass": outside, "tell_mass": i / 10 + shift, "tell_hit": float(shift > 0),
         "confidence": 0.9, "p_true": 0.9}
        for i in range(10)
    ]  # fmt: skip


def test_paired_differences_are_a_minus_b_on_the_same_images() -> None:
    a = _audit("a", _rows("saliency", 0.6, 0.2, right=10))
    b_rows = _rows("saliency", 0.5, 0.0, right=5)
    b = _audit("b", b_rows[::-1])  # another row order: pairs are matched by id
    rows = compare_audits(a, b, seed=0)
    got = {(r["method"], r["score"]): r for r in rows}
    assert [r["score"] for r in rows] == [*score_columns(), "correct"]
    assert got[("saliency", "outside_mass")]["mean_diff"] == pytest.approx(0.1)
    assert got[("saliency", "tell_mass")]["mean_diff"] == pytest.approx(0.2)
    assert got[("saliency", "tell_hit")]["mean_diff"] == pytest.approx(1.0)
    assert got[("–", "correct")]["mean_diff"] == pytest.approx(0.5)  # 10 vs 5 right
    assert all(r["n"] == 10 for r in rows)
    iv = got[("saliency", "tell_mass")]
    assert iv["lo"] == pytest.approx(0.2) and iv["hi"] == pytest.approx(0.2)  # constant shift


def test_every_method_is_compared_and_correctness_once() -> None:
    a = _audit("a", _rows("saliency", 0.6, 0.1, 10) + _rows("lime", 0.4, 0.1, 10))
    b = _audit("b", _rows("saliency", 0.6, 0.0, 10) + _rows("lime", 0.7, 0.0, 10))
    rows = compare_audits(a, b, seed=0)
    assert [r["method"] for r in rows].count("–") == 1
    lime = {r["score"]: r["mean_diff"] for r in rows if r["method"] == "lime"}
    assert lime["outside_mass"] == pytest.approx(-0.3)
    assert np.isclose(lime["tell_mass"], 0.1)
