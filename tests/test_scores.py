"""Known answers for the audit's own localisation scores (metrics.py, folded in from scores.py)."""

import numpy as np
import pytest

from leakaudit.evidence import metrics as scores


def _mask(h=8, w=8, rows=slice(0, 4)):
    m = np.zeros((h, w), dtype=bool)
    m[rows] = True
    return m


def test_all_attribution_inside_region_scores_zero_outside():
    region = _mask()
    attr = np.where(region, 1.0, 0.0)
    assert scores.outside_mass(attr, region) == 0.0


def test_half_inside_scores_half():
    region = _mask()  # top half
    attr = np.ones((8, 8))
    assert scores.outside_mass(attr, region) == pytest.approx(0.5)
    assert scores.tell_mass(attr, region) == pytest.approx(0.5)


def test_all_outside_scores_one():
    region = _mask()
    attr = np.where(region, 0.0, 2.0)
    assert scores.outside_mass(attr, region) == pytest.approx(1.0)


def test_empty_mask_gives_nan_not_crash():
    attr = np.ones((8, 8))
    empty = np.zeros((8, 8), dtype=bool)
    assert np.isnan(scores.outside_mass(attr, empty))
    assert np.isnan(scores.tell_mass(attr, empty))
    assert np.isnan(scores.tell_mass(attr, None))
    assert np.isnan(scores.tell_hit(attr, empty))


def test_zero_map_gives_nan():
    assert np.isnan(scores.outside_mass(np.zeros((8, 8)), _mask()))


def test_negative_attribution_is_not_evidence():
    region = _mask()
    attr = np.where(region, 1.0, -5.0)  # negative outside: ignored
    assert scores.outside_mass(attr, region) == 0.0


def test_tell_hit_points_at_argmax():
    tell = np.zeros((8, 8), dtype=bool)
    tell[0:2, 0:2] = True
    attr = np.zeros((8, 8))
    attr[1, 1] = 3.0
    attr[5, 5] = 1.0
    assert scores.tell_hit(attr, tell) == 1.0
    attr[5, 5] = 4.0
    assert scores.tell_hit(attr, tell) == 0.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        scores.outside_mass(np.ones((8, 8)), np.ones((4, 4), dtype=bool))


def test_area_fraction_is_chance_level():
    assert scores.area_fraction(_mask()) == pytest.approx(0.5)


def test_tell_hit_with_a_superpixel_map():
    tell = np.zeros((8, 8), dtype=bool)
    tell[0:2, 0:2] = True  # 4 pixels
    lime_like = np.zeros((8, 8))
    lime_like[0:4, 0:4] = 1.0  # top superpixel (16 px) swallows the whole tell: a hit
    assert scores.tell_hit(lime_like, tell) == 1.0
    grazing = np.zeros((8, 8))
    grazing[1:6, 1:6] = 1.0  # covers 1 of the 4 tell pixels: not a hit
    assert scores.tell_hit(grazing, tell) == 0.0
