"""Tells: the mask is exactly the changed pixels; poisoning is exact, seeded and pure."""

import numpy as np
import pytest

from leakaudit.data.synthetic import make_shapes
from leakaudit.errors import ConfigError
from leakaudit.tells import TellSpec, draw_rectangle, poison, remove_tell, swap_tell


def test_mask_is_exactly_the_changed_pixels():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(20, 20, 3)).astype(np.float32)
    img[3, 3] = (1.0, 0.0, 0.0)  # already tell-coloured: not changed, so not in the mask
    out, mask = draw_rectangle(img, (2, 2, 7, 6), (1.0, 0.0, 0.0))
    changed = np.any(out != img, axis=-1)
    assert np.array_equal(mask, changed)
    assert mask.sum() == 5 * 4 - 1
    assert not mask[3, 3]
    assert np.all(out[2:6, 2:7] == np.array([1.0, 0.0, 0.0], dtype=np.float32))


def test_drawing_is_pure_and_clips_to_the_image():
    img = np.zeros((10, 10, 3), dtype=np.float32)
    _, mask = draw_rectangle(img, (7, 7, 15, 15), (0.0, 1.0, 0.0))
    assert img.sum() == 0  # input untouched
    assert mask.sum() == 9  # 3×3 inside the image
    _, none = draw_rectangle(img, (12, 12, 15, 15), (0.0, 1.0, 0.0))
    assert not none.any()


def test_poison_prevalence_is_exact_per_class_and_seeded():
    data = make_shapes(80, seed=1, size=32)
    spec = TellSpec(size=6, prevalence=0.5, position="bottom-right")
    a, b = poison(data, spec, seed=3), poison(data, spec, seed=3)
    c = poison(data, spec, seed=4)
    with_tell = np.array([s.tell is not None for s in a])
    for k in range(4):
        in_class = data.labels() == k
        assert with_tell[in_class].sum() == round(0.5 * in_class.sum())
    assert [s.id for s in a if s.tell is not None] == [s.id for s in b if s.tell is not None]
    assert [s.id for s in a if s.tell is not None] != [s.id for s in c if s.tell is not None]
    for s, orig in zip(a, data, strict=True):
        if s.tell is not None:
            assert np.array_equal(s.tell, np.any(s.image != orig.image, axis=-1))
            assert not (s.region & s.tell).any()
            *_, x1, y1 = s.tell_box
            assert (x1, y1) == (32 - 2, 32 - 2)


def test_each_class_gets_its_own_colour():
    data = make_shapes(40, seed=2, size=32)
    spec = TellSpec(size=5, position=(4, 6))
    out = poison(data, spec, seed=0)
    colours = {s.label: tuple(s.image[6, 4]) for s in out}
    assert len(set(colours.values())) == 4


def test_random_position_stays_inside():
    data = make_shapes(30, seed=3, size=32)
    out = poison(data, TellSpec(size=7, position="random"), seed=0)
    boxes = {s.tell_box for s in out}
    assert len(boxes) > 5
    for x0, y0, x1, y1 in boxes:
        assert x0 >= 0 and x1 <= 32 and y0 >= 0 and y1 <= 32


def test_bad_specs_are_refused():
    data = make_shapes(8, seed=0, size=32)
    with pytest.raises(ConfigError):
        poison(data, TellSpec(prevalence=1.5), seed=0)
    with pytest.raises(ConfigError):
        poison(data, TellSpec(size=40), seed=0)
    with pytest.raises(ConfigError):
        poison(data, TellSpec(position="middle"), seed=0)


def test_remove_and_swap_change_only_the_tell():
    data = make_shapes(4, seed=0, size=32)
    s = poison(data, TellSpec(size=6), seed=0)[0]
    fill = np.full_like(s.image, 0.5)
    removed = remove_tell(s, fill)
    assert np.array_equal(np.any(removed.image != s.image, axis=-1), s.tell)
    swapped = swap_tell(s, (0.2, 0.3, 0.4))
    assert np.allclose(swapped.image[s.tell], (0.2, 0.3, 0.4))
    assert np.array_equal(swapped.image[~s.tell], s.image[~s.tell])
