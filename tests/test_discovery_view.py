"""Discovery on a bounded view: large images are reduced to ≤ 64 px (and large sets to a
sample), and what it finds there maps back onto the full-size images."""

from __future__ import annotations

import numpy as np

from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.evidence import discovery_view as dv
from leakaudit.evidence.discovery import discover_tells, suspect_boxes, suspected_tell_mask

BIG = 160
COLOURS = {
    k: tuple(float(v) for v in np.random.default_rng(7).uniform(0, 1, (4, 3))[k]) for k in range(4)
}


def _maps(ds, masks, seed: int = 0) -> np.ndarray:
    """Noise + object region + each image's own mask: a model that looks at the tell."""
    rng = np.random.default_rng(seed)
    maps = rng.random((len(ds), *ds[0].image.shape[:2])) * 0.2
    maps += 0.5 * np.stack([s.region for s in ds])
    for i, m in enumerate(masks):
        maps[i] += m
    return maps.astype(np.float32)


def _found(ds, maps):
    view = dv.discovery_view(ds, maps, seed=0)
    res = discover_tells(view.maps, view.images, ds.labels()[view.index], regions=view.regions)
    return view, [dv.to_full(s, view) for s in res.suspects]


def _covered(box, sample) -> float:
    return sample.tell[suspected_tell_mask(box, sample.image.shape)].sum() / sample.tell.sum()


def test_small_images_are_seen_as_they_are():
    ds = make_shapes(40, seed=0, size=48)
    maps = np.random.default_rng(0).random((40, 48, 48)).astype(np.float32)
    view = dv.discovery_view(ds, maps, seed=0)
    assert not view.reduced and np.array_equal(view.index, np.arange(40))
    assert np.array_equal(view.images, ds.images()) and np.array_equal(view.maps, maps)


def test_a_fixed_tell_found_at_64_px_covers_it_at_full_size():
    spec = TellSpec(size=24, position=(110, 12), colours=COLOURS)  # 2.3 % of the image
    ds = poison(make_shapes(200, seed=1, size=BIG), spec, seed=1)
    view, sus = _found(ds, _maps(ds, [s.tell for s in ds]))
    assert view.reduced and view.images.shape[1:] == (64, 64, 3)
    top = sus[0]
    assert top.strong and not top.moves
    assert all(_covered(top.box, s) == 1.0 for s in ds)  # grown a reduced pixel: all of it
    x0, y0, x1, y1 = top.box
    assert (x1 - x0) * (y1 - y0) <= 2.2 * 24 * 24
    for k in top.classes:  # colours measured on the reduced images are still the tell's
        assert np.abs(np.subtract(top.colours[k], COLOURS[k])).max() < 0.1


def test_a_moving_tell_on_a_sample_maps_boxes_to_dataset_indices(monkeypatch):
    monkeypatch.setattr(dv, "MAX_IMAGES", 120)
    spec = TellSpec(size=24, position="random", colours=COLOURS)
    ds = poison(make_shapes(200, seed=1, size=BIG), spec, seed=1)
    view, sus = _found(ds, _maps(ds, [s.tell for s in ds]))
    assert len(view.index) == 120 and np.all(np.diff(view.index) > 0)
    top = sus[0]
    assert top.strong and top.moves
    assert set(top.boxes) <= set(view.index.tolist())
    assert set(top.examples) <= set(view.index.tolist())
    boxes = suspect_boxes(top, len(ds))
    seen = set(view.index.tolist())
    hit = [b is not None and _covered(b, ds[i]) >= 0.9 for i, b in enumerate(boxes) if i in seen]
    assert np.mean(hit) >= 0.9


def test_spray_distances_in_blocks_equal_the_one_shot_broadcast():
    from leakaudit.evidence.discovery_spray import _squared_distances

    x = np.random.default_rng(3).random((37, 256))
    full = ((x[:, None, :] - x[None]) ** 2).sum(-1)
    assert np.array_equal(_squared_distances(x, max_bytes=5 * 37 * 256 * 8), full)  # 8 blocks
