"""Known answers for every registered metric, and the NaN rules they share."""

from __future__ import annotations

import numpy as np
import pytest

from leakaudit.evidence.metrics import METRICS, score_batch

H = W = 10


def _mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


MASK = _mask(0, 5, 0, 5)  # 25 px, top-left quarter


def test_all_inside():
    attr = np.where(MASK, 1.0, 0.0)
    assert METRICS["attribution_localisation"](attr, MASK) == 1.0
    assert METRICS["outside_mass"](attr, MASK) == 0.0
    assert METRICS["tell_mass"](attr, MASK) == 1.0
    assert METRICS["relevance_mass_accuracy"](attr, MASK) == 1.0
    assert METRICS["relevance_rank_accuracy"](attr, MASK) == 1.0
    assert METRICS["pointing_game"](attr, MASK) == 1.0
    # top 5 % of 100 px = 5 px, all of them (expected over ties) inside
    assert METRICS["top_k_intersection"](attr, MASK) == 1.0


def test_half_inside():
    attr = np.zeros((H, W))
    attr[0, 0] = 1.0
    attr[9, 9] = 1.0
    assert METRICS["attribution_localisation"](attr, MASK) == pytest.approx(0.5)
    assert METRICS["outside_mass"](attr, MASK) == pytest.approx(0.5)
    assert METRICS["relevance_mass_accuracy"](attr, MASK) == pytest.approx(0.5)
    # two tied maxima, one inside: expected hit 0.5
    assert METRICS["pointing_game"](attr, MASK) == pytest.approx(0.5)


def test_empty_mask_and_missing_mask_are_nan():
    attr = np.random.default_rng(0).random((H, W))
    empty = np.zeros((H, W), dtype=bool)
    for m in METRICS.values():
        assert np.isnan(m(attr, empty)), m.name
        assert np.isnan(m(attr, None)), m.name


def test_all_zero_map_is_nan():
    for m in METRICS.values():
        assert np.isnan(m(np.zeros((H, W)), MASK)), m.name


def test_non_finite_map_is_nan():
    attr = np.ones((H, W))
    attr[3, 3] = np.nan
    for m in METRICS.values():
        assert np.isnan(m(attr, MASK)), m.name


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        METRICS["pointing_game"](np.ones((H, W)), np.ones((H, W + 1), dtype=bool))


def test_pointing_game_hit_miss_and_tolerance():
    attr = np.zeros((H, W))
    attr[2, 2] = 1.0
    assert METRICS["pointing_game"](attr, MASK) == 1.0
    attr = np.zeros((H, W))
    attr[7, 2] = 1.0  # two rows below the mask's last row (4)
    assert METRICS["pointing_game"](attr, MASK) == 0.0
    from leakaudit.evidence.metrics import pointing_game

    assert pointing_game(attr, MASK, tolerance=3) == 1.0
    assert pointing_game(attr, MASK, tolerance=2.5) == 0.0  # distance is exactly 3 px


def test_relevance_rank_accuracy_constructed():
    mask = _mask(0, 1, 0, 4)  # 4 pixels: (0,0)..(0,3)
    attr = np.zeros((H, W))
    attr[0, 0], attr[0, 1] = 0.9, 0.8  # two of the top four in the mask
    attr[5, 5], attr[6, 6] = 0.95, 0.85
    assert METRICS["relevance_rank_accuracy"](attr, mask) == pytest.approx(0.5)


def test_constant_map_scores_chance_deterministically():
    attr = np.ones((H, W))
    for name in ("relevance_rank_accuracy", "pointing_game", "top_k_intersection"):
        assert METRICS[name](attr, MASK) == pytest.approx(0.25), name


def test_top_k_intersection_small_mask_cap():
    mask = _mask(0, 1, 0, 2)  # 2 px < k = 5 px
    attr = np.where(mask, 1.0, 0.0)
    attr[9, 9] = 0.1  # next ranks go outside
    assert METRICS["top_k_intersection"](attr, mask) == pytest.approx(2 / 5)


def test_signed_map_negative_evidence():
    attr = np.where(MASK, -1.0, 0.0)
    attr[9, 9] = 1.0
    assert METRICS["attribution_localisation"](attr, MASK) == 0.0
    assert METRICS["relevance_mass_accuracy"](attr, MASK) == pytest.approx(25 / 26)
    assert np.isnan(METRICS["pointing_game"](-np.abs(attr), MASK))


def test_score_batch_with_none_and_unknown():
    maps = np.stack([np.where(MASK, 1.0, 0.0), np.ones((H, W))]).astype(np.float32)
    out = score_batch(maps, [MASK, None], ["outside_mass", "pointing_game"])
    assert out["outside_mass"][0] == 0.0 and np.isnan(out["outside_mass"][1])
    assert set(out) == {"outside_mass", "pointing_game"}
    assert set(score_batch(maps, np.stack([MASK, MASK]))) == set(METRICS)
    with pytest.raises(KeyError):
        score_batch(maps, [MASK, MASK], ["nope"])


def test_registry_fields():
    for name, m in METRICS.items():
        assert m.name == name and m.needs in ("region", "tell") and m.description
    assert not METRICS["outside_mass"].higher_is_better
    assert METRICS["pointing_game"].higher_is_better
