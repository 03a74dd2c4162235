import math

import pytest

from leakaudit.auditing.verdict import (
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
    assert t["swap_follow_rate"] == (0.2, 0.4)
    assert t["tell_top_rate"] == (0.25, 0.50)  # the rest keep their defaults
    assert t.swap_follow_rate == (0.2, 0.4)  # the attribute spelling still works
    with pytest.raises(AttributeError):
        t.no_such_kind  # noqa: B018
    assert Thresholds.from_dict(t.as_dict()) == t
    with pytest.raises(ValueError, match="unknown"):
        Thresholds.from_dict({"nope": [1, 2]})


def test_swap_fail_line_is_a_binomial_test_against_the_error_driven_chance_rate():
    from scipy.stats import binom

    from leakaudit.auditing.verdict import SWAP_ALPHA, swap_chance, swap_lines

    # 4 classes, 48 images × 3 pastes; 55 % kept their class → chance = 0.45 / 3 = 0.15
    swap = {"n_pairs": 144, "follow_rate": 0.3, "kept_true_class_rate": 0.55}
    assert swap_chance(0.55, 4) == pytest.approx(0.15)
    warn, fail = swap_lines(swap, 4, (0.25, 0.5))
    # the line is the smallest x / n that the one-sided test rejects at SWAP_ALPHA (n = 48)
    x = round(fail * 48)
    assert binom.sf(x - 1, 48, 0.15) <= SWAP_ALPHA < binom.sf(x - 2, 48, 0.15)
    assert 0.25 <= fail < 0.5 and warn == 0.25
    # a model that half-uses its tell (follows 40 %, as 4-px tells at prevalence 0.5 did) now
    # fails; the fixed 0.5 only warned
    conds = build_conditions(
        {"swap": {**swap, "follow_rate": 0.4}}, {}, 0.02, Thresholds(), n_classes=4
    )
    assert conds[0].status == FAIL
    assert (
        build_conditions({"swap": {**swap, "follow_rate": 0.4}}, {}, 0.02, Thresholds())[0].status
        == WARN
    )  # without K: the configured pair, as before


def test_swap_fail_line_stays_between_the_configured_warn_and_fail():
    from leakaudit.auditing.verdict import swap_lines

    # near-perfect model, many images: significance alone would fail a 5 % follow rate
    tiny = {"n_pairs": 3000, "kept_true_class_rate": 0.99}
    assert swap_lines(tiny, 4, (0.25, 0.5)) == (0.25, 0.25)
    # two classes: every error is a follow, so the test can never reject; the cap decides
    two = {"n_pairs": 100, "kept_true_class_rate": 0.6}
    assert swap_lines(two, 2, (0.25, 0.5)) == (0.25, 0.5)
    # noisy small audit: no follow rate of 4 images rejects; the configured line decides
    noisy = {"n_pairs": 12, "kept_true_class_rate": 0.3}
    assert swap_lines(noisy, 4, (0.25, 0.5)) == (0.25, 0.5)
    # config still rules the bounds
    assert swap_lines(tiny, 4, (0.1, 0.3)) == (0.1, 0.1)
    assert swap_lines({}, 4, (0.25, 0.5)) == (0.25, 0.5)


def test_swap_line_is_not_capped_where_the_binomial_test_decides():
    from scipy.stats import binom

    from leakaudit.auditing.verdict import SWAP_ALPHA, swap_lines

    # a clean BCCD model (K = 3) on images holding a tell it does not use (docs/validity.md,
    # seventh round): pasting over the cell left only 36 % of 34 images their class, so a
    # tell-blind model follows at (1 − 0.36) / 2 = 0.32 by its errors; it followed 0.55, which
    # the one-sided test does not reject. Capped at 0.5, the line failed it: a false alarm.
    swap = {"n_pairs": 67, "follow_rate": 0.552, "kept_true_class_rate": 0.358}
    warn, fail = swap_lines(swap, 3, (0.25, 0.5))
    x = round(fail * 34)
    chance = (1 - 0.358) / 2
    assert binom.sf(x - 1, 34, chance) <= SWAP_ALPHA < binom.sf(x - 2, 34, chance)
    assert fail > 0.552 and warn == 0.25
    conds = build_conditions({"swap": swap}, {}, 0.02, Thresholds(), n_classes=3)
    assert conds[0].status == WARN  # above the warn line, not a significant follow
