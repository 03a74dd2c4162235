"""A metric and a condition added at run time (one definition + one registry line each, as the
README's "Adding a metric / a condition" shows) reach the per-sample table, summary.json, the
verdict and report.html without any other edit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_fixtures import CornerReader

import leakaudit
from leakaudit.auditing import conditions
from leakaudit.auditing.conditions import Check, ConditionSpec
from leakaudit.auditing.verdict import FAIL, Thresholds
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.evidence import metrics


def peak_on_object(attr: np.ndarray, region: np.ndarray | None) -> float:
    """1.0 when the map's maximum lies on the object, else 0.0 (NaN without a region)."""
    if region is None or not region.any() or np.max(attr) <= 0:
        return float("nan")
    return float(np.asarray(region, bool).ravel()[int(np.argmax(attr))])


METRIC = metrics.Metric(
    "peak_on_object", peak_on_object, True, "Map maximum on the object.", "region",
    audited=True, label="peak on object",
)  # fmt: skip
SPEC = ConditionSpec(
    "peak_off_object", "attribution", 0.5, 0.8,
    "share of images whose map maximum lies off the object",
    "share of images whose most attributed pixel is not on the annotated object",
    (Check("{method}: peak off object", "method",
           lambda e, m: 1.0 - e.methods[m]["peak_on_object"]),),
)  # fmt: skip


@pytest.fixture
def registered():
    metrics.METRICS[METRIC.name] = METRIC
    conditions.register(SPEC)
    try:
        yield
    finally:
        del metrics.METRICS[METRIC.name]
        del conditions.CONDITIONS[SPEC.kind]


def test_known_answers_of_the_example_metric() -> None:
    region = np.zeros((4, 4), bool)
    region[:2] = True
    attr = np.zeros((4, 4))
    attr[0, 1] = 1.0
    assert peak_on_object(attr, region) == 1.0
    attr[3, 3] = 2.0
    assert peak_on_object(attr, region) == 0.0


def test_a_metric_and_a_condition_added_at_run_time_reach_summary_and_html(
    registered, tmp_path
) -> None:
    data = poison(make_shapes(16, seed=2, size=24), TellSpec(size=6), seed=0)
    images, masks = np.stack([s.image for s in data]), np.stack([s.region for s in data])
    quick = {"sanity": False, "ablation": False}
    result = leakaudit.audit(CornerReader(), (images, data.labels()), ["saliency"], masks=masks,
                             class_names=data.class_names, **quick)  # fmt: skip
    audit = result.models["model"]
    column = audit.per_sample["peak_on_object"].to_numpy(dtype=float)
    finite = column[np.isfinite(column)]  # NaN where the map is all zero (no tell to read)
    assert len(finite) >= 8 and set(np.unique(finite)) <= {0.0, 1.0}
    html, summary_path = leakaudit.write_report(result, tmp_path / "out")
    s = json.loads(summary_path.read_text())
    m = s["models"]["model"]
    mean = m["methods"]["saliency"]["peak_on_object"]
    assert mean == pytest.approx(finite.mean())
    assert "peak_on_object_ci95" not in m["methods"]["saliency"]  # not sampled: no interval
    assert sum(c["n"] for c in m["methods"]["saliency"]["per_class"].values()) == 16
    cond = next(c for c in m["conditions"] if c["kind"] == "peak_off_object")
    assert cond["name"] == "saliency: peak off object"
    assert cond["value"] == pytest.approx(1.0 - mean)
    assert (cond["warn"], cond["fail"]) == (0.5, 0.8)
    assert s["thresholds"]["peak_off_object"] == [0.5, 0.8]
    # the corner reader looks at the tell, off the object: the new condition fails it
    assert cond["status"] == FAIL and m["verdict"] == "leak"
    page = html.read_text()
    assert "model: peak on object" in page  # metrics table column
    assert "saliency: peak off object" in page  # verdict table row
    assert "share of images whose most attributed pixel is not on the annotated object" in page


def test_thresholds_follow_the_registry(registered) -> None:
    assert Thresholds()["peak_off_object"] == (0.5, 0.8)
    assert Thresholds.from_dict({"peak_off_object": [0.1, 0.2]})["peak_off_object"] == (0.1, 0.2)
    with pytest.raises(ValueError, match="already registered"):
        conditions.register(SPEC)


def test_the_registries_are_back_to_their_own_entries_without_the_fixture() -> None:
    assert "peak_on_object" not in metrics.METRICS
    assert "peak_off_object" not in Thresholds().lines
    assert [m.name for m in metrics.audited()] == ["outside_mass", "tell_mass", "tell_hit"]


def test_the_docs_table_of_conditions_is_the_registry() -> None:
    from pathlib import Path

    docs = (Path(__file__).parents[1] / "docs" / "methods.md").read_text(encoding="utf-8")
    assert conditions.conditions_table() in docs
