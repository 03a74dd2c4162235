"""Tell discovery finds a planted tell it was not told about, and stays quiet on clean data."""

from __future__ import annotations

import numpy as np
import pytest

from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.evidence.discovery import (
    STRONG_SCORE,
    SuspectedTell,
    box_area,
    box_iou,
    discover_tells,
    kmeans,
    same_place,
    spray,
    suspected_tell_mask,
)
from leakaudit.explain.registry import make_explainer
from leakaudit.models.predict import predict_proba
from leakaudit.models.train import train_classifier
from leakaudit.models.zoo import SmallCNN

SIZE = 32
# Random per-class colours at an off-corner place: nothing here is passed to discovery.
COLOURS = {
    k: tuple(float(v) for v in np.random.default_rng(42).uniform(0, 1, (4, 3))[k]) for k in range(4)
}
SPEC = TellSpec(size=6, position=(20, 4), colours=COLOURS)
TRUE_BOX = (20, 4, 26, 10)


def _regions(ds):
    return np.stack([s.region for s in ds])


def _assert_found(res, classes=range(4)):
    top = res.suspects[0]
    assert top.strong, top
    assert box_iou(top.box, TRUE_BOX) > 0.3
    assert set(top.classes) <= set(classes)
    for k in top.classes:
        assert np.abs(np.subtract(top.colours[k], COLOURS[k])).max() < 0.1, (k, top.colours)


def _synthetic_maps(ds, tell: bool, seed: int) -> np.ndarray:
    """Maps = noise + the object region, plus the tell box when ``tell``."""
    rng = np.random.default_rng(seed)
    maps = rng.random((len(ds), SIZE, SIZE)) * 0.2
    maps += 0.5 * _regions(ds)
    if tell:
        maps[:, TRUE_BOX[1] : TRUE_BOX[3], TRUE_BOX[0] : TRUE_BOX[2]] += 1.0
    return maps.astype(np.float32)


def test_synthetic_maps_find_tell():
    ds = poison(make_shapes(200, seed=1, size=SIZE), SPEC, seed=1)
    res = discover_tells(
        _synthetic_maps(ds, True, 0), ds.images(), ds.labels(), regions=_regions(ds), seed=0
    )
    _assert_found(res)
    assert sorted(res.suspects[0].classes) == [0, 1, 2, 3]
    assert res.suspects[0].share > 0.9


def test_synthetic_clean_no_strong_suspect():
    ds = make_shapes(200, seed=1, size=SIZE)
    res = discover_tells(
        _synthetic_maps(ds, False, 0), ds.images(), ds.labels(), regions=_regions(ds), seed=0
    )
    assert not res.strong
    assert all(s.score < STRONG_SCORE for s in res.suspects)


def test_tell_in_data_but_not_used_by_model_is_not_strong():
    # The data carry the tell, but the maps ignore it: discovery is about what the model uses.
    ds = poison(make_shapes(200, seed=1, size=SIZE), SPEC, seed=1)
    res = discover_tells(
        _synthetic_maps(ds, False, 0), ds.images(), ds.labels(), regions=_regions(ds), seed=0
    )
    assert not res.strong


@pytest.fixture(scope="module")
def real():
    train = make_shapes(400, seed=0, size=SIZE)
    test = make_shapes(200, seed=1, size=SIZE)
    out = {}
    for name, tr, te in [
        ("poisoned", poison(train, SPEC, seed=0), poison(test, SPEC, seed=1)),
        ("clean", train, test),
    ]:
        model = SmallCNN(4, width=8)
        train_classifier(model, tr.images(), tr.labels(), seed=0, epochs=8, progress=False)
        x, y = te.images(), te.labels()
        pred = predict_proba(model, x).argmax(1)
        maps = make_explainer("saliency", model).attribute(x, pred).maps
        out[name] = (maps, x, y, pred, _regions(te))
    return out


def test_real_poisoned_model_saliency_finds_tell(real):
    maps, x, y, pred, regions = real["poisoned"]
    res = discover_tells(maps, x, y, pred, regions, seed=0)
    _assert_found(res)
    assert res.suspects[0].examples


def test_real_clean_model_no_strong_suspect(real):
    maps, x, y, pred, regions = real["clean"]
    res = discover_tells(maps, x, y, pred, regions, seed=0)
    assert not res.strong, res.suspects[:2]


def test_discovery_without_regions_or_predictions(real):
    maps, x, y, _, _ = real["poisoned"]
    res = discover_tells(maps, x, y, seed=0)
    _assert_found(res)


def test_deterministic(real):
    maps, x, y, pred, regions = real["poisoned"]
    a = discover_tells(maps, x, y, pred, regions, seed=3)
    b = discover_tells(maps, x, y, pred, regions, seed=3)
    assert [(s.box, s.score, s.classes) for s in a.suspects] == [
        (s.box, s.score, s.classes) for s in b.suspects
    ]


def test_suspected_tell_mask():
    s = SuspectedTell(
        box=(28, 30, 40, 40), colour=(1, 0, 0), classes=[0], share=1, score=1, examples=[]
    )
    m = suspected_tell_mask(s, (32, 32, 3))
    assert m.shape == (32, 32) and m.sum() == 4 * 2 and m[30:32, 28:32].all()


def test_spray_separates_two_groups_and_kmeans_is_seeded():
    rng = np.random.default_rng(0)
    maps = rng.random((40, 32, 32)) * 0.1
    maps[:20, :8, :8] += 1.0
    maps[20:, 24:, 24:] += 1.0
    res = spray(maps, seed=0)
    assert res.n_clusters == 2
    assert len(set(res.labels[:20])) == 1 and len(set(res.labels[20:])) == 1
    assert res.labels[0] != res.labels[-1]
    pts = rng.normal(size=(50, 2))
    assert np.array_equal(kmeans(pts, 3, seed=1), kmeans(pts, 3, seed=1))


def test_degenerate_inputs_do_not_crash():
    ds = make_shapes(12, seed=2, size=SIZE)
    res = discover_tells(np.zeros((12, SIZE, SIZE)), ds.images(), ds.labels(), seed=0)
    assert res.suspects == [] and res.n_used == 0


def test_wilson_lower_penalises_small_samples():
    from leakaudit.evidence.discovery import wilson_lower

    assert wilson_lower(3, 10) < wilson_lower(30, 100) < 0.3
    assert wilson_lower(50, 50) > 0.9 and wilson_lower(0, 10) == 0.0 and wilson_lower(0, 0) == 0.0


def test_nested_boxes_are_one_place():
    assert same_place((2, 2, 12, 12), (2, 2, 9, 9))  # IoU 0.49, but fully inside
    assert same_place((0, 0, 10, 10), (1, 0, 11, 10))  # IoU 0.82
    assert not same_place((0, 0, 10, 10), (5, 5, 15, 15))  # a quarter overlap
    assert not same_place((0, 0, 10, 10), (20, 20, 30, 30))


def test_strong_suspects_rank_by_what_the_model_does():
    from leakaudit.evidence.suspects import Suspect, rank_suspects

    def sus(score, drop, follow, name):
        found = SuspectedTell((0, 0, 4, 4), (1.0, 0.0, 0.0), [0], 1.0, score, [], source=name)
        return Suspect(found, {"accuracy_drop": drop}, {"follow_rate": follow}, float("nan"))

    ranked = rank_suspects(
        [
            sus(0.97, 0.0, 0.02, "inner part"),  # same score, removal/swap do nothing
            sus(0.20, 0.9, 0.90, "weak"),  # big effect but not a strong suspect
            sus(0.97, 0.34, 1.0, "whole tell"),
            sus(0.60, float("nan"), float("nan"), "untested"),
        ]
    )
    assert [r.found.source for r in ranked] == ["whole tell", "inner part", "untested", "weak"]


# ---------------------------------------------------------------- colour first: tells that move

MOVING = TellSpec(size=6, position="random", colours=COLOURS)


def _maps_on(ds, masks, seed: int) -> np.ndarray:
    """Maps = noise + the object region, plus each image's own mask (where given)."""
    rng = np.random.default_rng(seed)
    maps = rng.random((len(ds), SIZE, SIZE)) * 0.2 + 0.5 * _regions(ds)
    for i, m in enumerate(masks):
        if m is not None:
            maps[i] += 1.0 * m
    return maps.astype(np.float32)


def _coverage(sus, ds) -> float:
    from leakaudit.evidence.discovery import suspect_boxes

    boxes = suspect_boxes(sus, len(ds))
    hits = [
        b is not None and s.tell[suspected_tell_mask(b, s.image.shape)].sum() >= 0.5 * s.tell.sum()
        for s, b in zip(ds, boxes, strict=True)
        if s.tell is not None
    ]
    return float(np.mean(hits))


def test_tell_at_a_random_place_is_found_colour_first_with_a_box_per_image():
    ds = poison(make_shapes(200, seed=1, size=SIZE), MOVING, seed=1)
    assert len({s.tell_box for s in ds}) > 100  # it really moves
    maps = _maps_on(ds, [s.tell for s in ds], 0)
    res = discover_tells(maps, ds.images(), ds.labels(), regions=_regions(ds), seed=0)
    top = res.suspects[0]
    assert top.strong and top.moves and top.source == "colour"
    assert sorted(top.classes) == [0, 1, 2, 3]
    for k in top.classes:  # each class its own colour, measured from the pixels
        assert np.abs(np.subtract(top.colours[k], COLOURS[k])).max() < 0.15, (k, top.colours)
    assert _coverage(top, ds) >= 0.9


def test_moving_tell_in_data_but_ignored_by_model_is_not_strong():
    ds = poison(make_shapes(200, seed=1, size=SIZE), MOVING, seed=1)
    maps = _maps_on(ds, [None] * len(ds), 0)
    res = discover_tells(maps, ds.images(), ds.labels(), regions=_regions(ds), seed=0)
    assert not res.strong, res.suspects[:2]


def test_one_colour_for_every_class_is_not_a_tell():
    # attended everywhere, but the same colour in all classes: it predicts nothing
    same = TellSpec(size=6, position="random", colours={k: (1.0, 0.0, 1.0) for k in range(4)})
    ds = poison(make_shapes(200, seed=1, size=SIZE), same, seed=1)
    maps = _maps_on(ds, [s.tell for s in ds], 0)
    res = discover_tells(maps, ds.images(), ds.labels(), regions=_regions(ds), seed=0)
    assert not [s for s in res.strong if s.moves], res.strong[:2]


def test_moving_suspect_samples_give_removal_and_swap_a_box_per_image():
    from leakaudit.evidence.discovery import moving_suspect_samples

    ds = make_shapes(6, seed=0, size=SIZE)
    boxes = {0: (1, 1, 5, 5), 2: (10, 12, 16, 18), 3: (0, 0, 3, 3)}
    sus = SuspectedTell(
        (1, 1, 5, 5), (1.0, 0.0, 0.0), [int(ds[0].label)], 1.0, 0.9, [0], boxes=boxes
    )
    idx, removal, swap = moving_suspect_samples(ds.samples, sus)
    assert idx == [i for i in boxes if ds[i].label == ds[0].label]
    for i, s in zip(idx, removal, strict=True):
        assert s.tell_box == boxes[i] and s.tell.sum() == box_area(boxes[i])
        assert np.array_equal(s.image, ds[i].image)
    # own box where there is one, else the boxes seen elsewhere in turn (image i: seen[i % 3])
    seen = list(boxes.values())
    assert [s.tell_box for s in swap] == [seen[0], seen[1], seen[1], seen[2], seen[1], seen[2]]


def test_colour_first_is_off_for_fixed_tells_it_would_duplicate():
    # a fixed-place tell: the place-first suspect stands, no colour twin of it is added
    ds = poison(make_shapes(200, seed=1, size=SIZE), SPEC, seed=1)
    res = discover_tells(
        _synthetic_maps(ds, True, 0), ds.images(), ds.labels(), regions=_regions(ds), seed=0
    )
    assert not res.suspects[0].moves
    assert not [s for s in res.strong if s.moves]
