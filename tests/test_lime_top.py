"""LIME's top is the highest-weighted superpixel, not the highest weight per pixel."""

from __future__ import annotations

import numpy as np
import pytest

from leakaudit.evidence import metrics
from leakaudit.explain.base import Attribution


def _hand_made() -> Attribution:
    """16×16: superpixel 0 is the left half (128 px, weight 4 → 1/32 per pixel), superpixel 1 a
    2×2 square (4 px, weight 1 → 1/4 per pixel: the map's maximum), 2 the rest (weight 0.5)."""
    seg = np.full((16, 16), 2, dtype=np.int64)
    seg[:, :8] = 0
    seg[12:14, 12:14] = 1
    weights = np.array([4.0, 1.0, 0.5], dtype=np.float32)
    area = np.bincount(seg.ravel(), minlength=3)
    maps = (weights / area)[seg].astype(np.float32)
    return Attribution(maps[None], "lime", "weight / area", {"segments": seg[None],
                                                             "weights": weights[None]})  # fmt: skip


def test_rank_keys_are_superpixel_weights() -> None:
    att = _hand_made()
    keys = att.rank_keys()
    assert keys.shape == att.maps.shape
    assert keys[0, 0, 0] == 4.0 and keys[0, 12, 12] == 1.0 and keys[0, 0, 15] == 0.5
    assert Attribution(att.maps, "saliency", "").rank_keys() is None


def test_top_is_the_highest_weighted_superpixel() -> None:
    att = _hand_made()
    a, rank = att.maps[0], att.rank_keys()[0]
    big = att.extras["segments"][0] == 0
    small = att.extras["segments"][0] == 1
    assert a[small].max() > a[big].max()  # per pixel the small one peaks
    # without the keys the small superpixel is "top"; with them, the big one
    assert metrics.tell_hit(a, small) == 1.0 and metrics.tell_hit(a, big) == 0.0
    assert metrics.tell_hit(a, big, rank=rank) == 1.0
    assert metrics.tell_hit(a, small, rank=rank) == 0.0
    assert metrics.pointing_game(a, big, rank=rank) == 1.0
    assert metrics.pointing_game(a, small, rank=rank) == 0.0
    # top 5 % = 13 px: all inside the big superpixel
    assert metrics.top_k_intersection(a, big, rank=rank) == 1.0
    assert metrics.top_k_intersection(a, small, rank=rank) == 0.0
    assert metrics.relevance_rank_accuracy(a, big, rank=rank) == 1.0
    # mass scores keep reading the map: superpixel shares of the weight
    assert metrics.tell_mass(a, big) == pytest.approx(4.0 / 5.5)
    row = metrics.score_image(a, big, big, rank=rank)
    assert row["tell_hit"] == 1.0 and row["tell_mass"] == pytest.approx(4.0 / 5.5)
    out = metrics.score_batch(att.maps, big[None], ["pointing_game", "tell_mass"],
                              ranks=att.rank_keys())  # fmt: skip
    assert out["pointing_game"][0] == 1.0


def test_lime_attribution_ranks_by_weight() -> None:
    import torch

    from leakaudit.explain.lime import Lime

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 3),
    )  # fmt: skip
    x = np.random.default_rng(0).random((2, 24, 24, 3), dtype=np.float32)
    att = Lime(model, n_samples=16, n_segments=8).attribute(x, np.array([0, 1]))
    keys = att.rank_keys()
    for i in range(2):
        seg, w = att.extras["segments"][i], att.extras["weights"][i]
        top = keys[i] == keys[i].max()
        assert np.array_equal(top, seg == int(np.nanargmax(w)))


def test_audit_rows_use_lime_rank_keys() -> None:
    """The engine's per-image rows (what every audit scores) take LIME's ranking: with the
    tell on the big, highest-weighted superpixel, "top on tell" is 1 with the keys, 0 without."""
    from leakaudit.data.samples import Sample
    from leakaudit.engines.work import score_rows

    att = _hand_made()
    big = att.extras["segments"][0] == 0
    sample = Sample(np.zeros((16, 16, 3), np.float32), 0, region=~big, tell=big, id="x")
    one = np.ones(1)
    ranked = score_rows("lime", [sample], att.maps, np.zeros(1, int), one, one, att.rank_keys())
    plain = score_rows("lime", [sample], att.maps, np.zeros(1, int), one, one)
    assert ranked[0]["tell_hit"] == 1.0 and plain[0]["tell_hit"] == 0.0
    assert ranked[0]["tell_mass"] == plain[0]["tell_mass"] == pytest.approx(4.0 / 5.5)
