import math

import pytest

from leakaudit.verdict import (
    FAIL,
    NA,
    PASS,
    WARN,
    Condition,
    Thresholds,
    build_conditions,
    excess_mass,
    verdict,
)


def test_condition_statuses_follow_thresholds():
    assert Condition("x", "swap_follow_rate", "behaviour", 0.1, 0.25, 0.5).status == PASS
    assert Condition("x", "swap_follow_rate", "behaviour", 0.3, 0.25, 0.5).status == WARN
    assert Condition("x", "swap_follow_rate", "behaviour", 0.5, 0.25, 0.5).status == FAIL
    assert Condition("x", "swap_follow_rate", "behaviour", math.nan, 0.25, 0.5).status == NA


def test_verdict_is_leak_on_any_failure_and_inconclusive_when_untested():
    conds = build_conditions(
        {"removal": {"accuracy_drop": 0.05}, "swap": {"follow_rate": 0.9}},
        {"lime": {"tell_top_rate": 0.1, "tell_mass": 0.05}},
        tell_area=0.025,
        thresholds=Thresholds(),
    )
    assert verdict(conds) == "leak"
    assert verdict([c for c in conds if c.kind != "swap_follow_rate"]) == "clean"
    assert verdict(build_conditions({}, {"lime": {}}, math.nan, Thresholds())) == "inconclusive"


def test_excess_mass_is_zero_at_chance_and_one_when_all_on_tell():
    assert excess_mass(0.1, 0.1) == pytest.approx(0.0)
    assert excess_mass(1.0, 0.1) == pytest.approx(1.0)


def test_thresholds_round_trip_and_reject_unknown_names():
    t = Thresholds.from_dict({"swap_follow_rate": [0.2, 0.4]})
    assert t.swap_follow_rate == (0.2, 0.4)
    assert Thresholds.from_dict(t.as_dict()) == t
    with pytest.raises(ValueError, match="unknown"):
        Thresholds.from_dict({"nope": [1, 2]})
