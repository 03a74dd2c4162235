"""Power sweep on a tiny configuration: structure, rates in [0, 1], a big tell is caught."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from leakaudit.data.tells import CORNERS
from leakaudit.errors import ConfigError
from leakaudit.experiments.demo import DemoConfig
from leakaudit.experiments.power import (
    MIN_DETECTION,
    PowerResult,
    TellStyle,
    calibration_table,
    draw_style,
    format_power_table,
    run_power,
)

# 32 px and 1 280 training images: the clean model still learns shapes (~0.6 vs 0.25 chance)
TINY = replace(
    DemoConfig.quick(),
    n_images=1600,
    size=32,
    epochs=8,
    batch_size=32,
    n_eval=40,
    lime_samples=80,
    lime_segments=20,
)
RATES = (
    "detection_rate",
    "false_alarm_rate",
    "missed_but_warned_rate",
    "clean_warned_rate",
    "discovery_hit_rate",
    "clean_strong_suspect_rate",
)


@pytest.fixture(scope="module")
def result() -> PowerResult:
    return run_power(
        sizes=(4, 8), prevalences=(1.0,), seeds=(0,), base=TINY, progress=False, threads=1
    )


def test_table_has_one_row_per_cell_and_rates_in_unit_interval(result):
    t = result.table()
    assert len(t) == 2
    assert sorted(zip(t["size"], t["prevalence"], strict=True)) == [(4, 1.0), (8, 1.0)]
    assert (t["runs"] == 1).all()
    for col in RATES:
        v = t[col].dropna()
        assert ((v >= 0) & (v <= 1)).all(), col


def test_runs_record_verdicts_conditions_accuracies_and_discovery(result):
    assert len(result.runs) == 2
    for r in result.runs:
        assert set(r.verdicts) == {"clean", "poisoned"}
        names = {c["name"] for c in r.conditions["poisoned"]}
        assert {"tell removal", "tell swap", "saliency: tell mass", "lime: tell mass"} <= names
        assert r.clean_accuracy > 0.4  # chance is 0.25: the clean model learned shapes
        assert r.poisoned_accuracy > r.poisoned_accuracy_on_clean  # it uses the tell
        assert r.discovery["poisoned_saliency"]["hit"] in (True, False)
    # one clean model per seed: the same accuracy in every cell
    assert len({r.clean_accuracy for r in result.runs}) == 1


def test_large_full_prevalence_tell_is_detected(result):
    big = next(r for r in result.runs if r.size == 8)
    assert big.verdicts["poisoned"] == "leak"
    assert result.table().set_index("size").loc[8, "detection_rate"] == 1.0
    small = result.table().set_index("size").loc[4, "detection_rate"]
    assert result.smallest_detected()[1.0] == (4 if small >= MIN_DETECTION else 8)


def test_calibration_table_covers_every_condition_with_thresholds(result):
    cal = calibration_table(result)
    assert {"tell removal", "tell swap", "saliency: top on tell", "lime: tell mass"} <= set(
        cal["condition"]
    )
    row = cal.set_index("condition").loc["tell swap"]
    assert (row["warn"], row["fail"]) == result.thresholds["swap_follow_rate"]
    assert row["poisoned_max"] >= row["poisoned_min"]
    assert row["n_clean"] == row["n_poisoned"] == 2


def test_json_and_text_outputs(result):
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert len(data["cells"]) == 2 and len(data["runs"]) == 2
    assert data["seeds"] == [0]
    text = format_power_table(result)
    assert "detected" in text and "tell swap" in text


def test_style_is_seeded_random_and_fits_every_size():
    a, b = draw_style(0, 4), draw_style(0, 4)
    assert a == b
    styles = [draw_style(s, 4) for s in range(20)]
    assert len({str(s.colours) for s in styles}) == 20
    assert any(isinstance(s.position, str) for s in styles)
    assert any(isinstance(s.position, tuple) for s in styles)
    for s in styles:
        cols = list(s.colours.values())
        for i in range(len(cols)):
            for j in range(i):
                assert sum(abs(x - y) for x, y in zip(cols[i], cols[j], strict=True)) >= 0.6
    spot = TellStyle({0: (1.0, 0.0, 0.0)}, (1.0, 0.0))
    assert spot.position_for(10, 48, 2) == (36, 2)  # right edge, inside the margin
    assert TellStyle({}, CORNERS[0]).position_for(10, 48, 2) == CORNERS[0]


@pytest.mark.parametrize(
    "kwargs", [{"sizes": (60,)}, {"prevalences": (0.0,)}, {"seeds": ()}, {"prevalences": (1.5,)}]
)
def test_bad_options_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        run_power(**{"base": TINY, "progress": False, **kwargs})


def test_rate_of_nothing_is_nan():
    from leakaudit.experiments.power import _rate

    assert math.isnan(_rate([None, None]))
    assert _rate([True, False, None]) == 0.5


def test_wilson_interval_brackets_the_rate():
    from leakaudit.experiments.power import wilson_interval

    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.15 < hi < 0.18  # 0 of 20 is "at most ~16 %", not 0 %
    lo, hi = wilson_interval(10, 20)
    assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(0.5 - lo)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no trials: nothing known (as the audit's)


def test_suspect_coverage_counts_tells_covered_by_the_box_in_their_own_image():

    from leakaudit.data.synthetic import make_shapes
    from leakaudit.data.tells import TellSpec, poison
    from leakaudit.evidence.discovery import SuspectedTell
    from leakaudit.experiments.power import suspect_coverage

    ds = poison(make_shapes(8, seed=0, size=32), TellSpec(size=6, position="random"), seed=0)
    own = {i: s.tell_box for i, s in enumerate(ds)}
    half = {i: (b[0], b[1], b[0] + 3, b[3]) for i, b in own.items()}  # exactly half the tell
    sliver = {i: (b[0], b[1], b[0] + 2, b[3]) for i, b in own.items()}  # a third
    for boxes, expected in ((own, 1.0), (half, 1.0), (sliver, 0.0), ({0: own[0]}, 1 / 8)):
        sus = SuspectedTell(own[0], (1.0, 0.0, 0.0), [0], 1.0, 1.0, [], boxes=boxes)
        assert suspect_coverage(sus, ds) == pytest.approx(expected)
    fixed = SuspectedTell(own[0], (1.0, 0.0, 0.0), [0], 1.0, 1.0, [])  # one box everywhere
    assert suspect_coverage(fixed, ds) == pytest.approx(np.mean([own[i] == own[0] for i in own]))
    assert suspect_coverage(None, ds) == 0.0
    first = SuspectedTell(own[0], (1.0, 0.0, 0.0), [0], 1.0, 1.0, [], boxes={0: own[0], 1: own[1]})
    rest = SuspectedTell(own[0], (0.0, 1.0, 0.0), [1], 1.0, 1.0, [], boxes={2: own[2]})
    assert suspect_coverage([first, rest], ds) == pytest.approx(3 / 8)  # either box counts
    assert suspect_coverage([], ds) == 0.0
    labels = np.array([s.label for s in ds])
    in_0 = labels == labels[0]  # only class labels[0]'s tells count; image 0 is one of them
    assert suspect_coverage(first, ds, [int(labels[0])]) == pytest.approx(
        np.mean([i in (0, 1) for i in np.flatnonzero(in_0)])
    )
    absent = int(labels.max()) + 1
    assert np.isnan(suspect_coverage(first, ds, [absent]))  # no tells of that class: NaN


def test_relied_classes_are_those_whose_tell_removal_breaks_the_class():
    from types import SimpleNamespace

    from leakaudit.experiments.power import relied_classes

    per = {0: {"drop_lower": 0.45}, 1: {"drop_lower": 0.10}, 2: {"drop_lower": 0.04},
           3: {"drop_lower": 0.0}}  # fmt: skip
    audit = SimpleNamespace(behaviour={"removal": {"per_class": per}})
    assert relied_classes(audit) == [0, 1]  # at or above the warn line of removal_class_drop
    assert relied_classes(SimpleNamespace(behaviour={})) == []


@pytest.fixture(scope="module")
def moving() -> PowerResult:
    return run_power(
        sizes=(8,), prevalences=(1.0,), seeds=(0,), base=TINY, progress=False, threads=1,
        lime=False, kinds=("border",), random_place=True, clean_data_audit=True,
    )  # fmt: skip


def test_kinds_axis_random_place_and_annotation_free_results(moving):
    (run,) = moving.runs
    assert run.kind == "border" and run.position == "random"
    assert set(run.blind) == {"clean", "poisoned"}
    for b in run.blind.values():
        assert 0.0 <= b["coverage"] <= 1.0 and b["leak"] in (True, False)
        assert set(b["relied_classes"]) <= set(range(TINY.n_classes))
        assert b["relied_classes"] or np.isnan(b["coverage_relied"])
    row = moving.table().iloc[0]
    assert row["kind"] == "border" and 0.0 <= row["mean_coverage"] <= 1.0
    assert moving.clean_audits[0]["verdict"] in ("clean", "leak", "inconclusive")
    fa = moving.false_alarms()
    assert fa["clean_data_audits"] == 1
    data = json.loads(json.dumps(moving.to_json(), allow_nan=False))
    assert data["kinds"] == ["border"] and data["config"]["random_place"] is True
    assert "detected w/o annotations" in format_power_table(moving)


def test_unknown_kind_is_a_config_error():
    with pytest.raises(ConfigError):
        run_power(sizes=(8,), seeds=(0,), base=TINY, progress=False, kinds=("sticker",))
