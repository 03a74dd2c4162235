"""Tells: the mask is exactly the changed pixels; poisoning is exact, seeded and pure."""

import numpy as np
import pytest

from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, draw_rectangle, poison, remove_tell, swap_tell
from leakaudit.errors import ConfigError


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


# ---------------------------------------------------------------- tell kinds

KIND_NAMES = ("solid", "logo", "text", "border", "noise")


@pytest.mark.parametrize("kind", KIND_NAMES)
@pytest.mark.parametrize("jpeg", [None, 40])
def test_every_kind_masks_exactly_its_changed_pixels_near_its_box(kind, jpeg):
    rng = np.random.default_rng(1)
    img = rng.uniform(size=(32, 32, 3)).astype(np.float32)
    spec = TellSpec(size=10, kind=kind, jpeg_quality=jpeg)
    box = (5, 7, 15, 17)
    out, mask = spec.draw(img, box, (0.9, 0.1, 0.2), np.random.default_rng(0))
    assert img.dtype == out.dtype and np.array_equal(mask, np.any(out != img, axis=-1))
    assert mask.any()
    grow = 2 if jpeg else 0  # the JPEG round trip touches the box's 2-px neighbourhood only
    outside = np.ones((32, 32), dtype=bool)
    outside[7 - grow : 17 + grow, 5 - grow : 15 + grow] = False
    assert not mask[outside].any()
    again, _ = spec.draw(img, box, (0.9, 0.1, 0.2), np.random.default_rng(0))
    assert np.array_equal(out, again)  # seeded: same image twice


def test_solid_kind_is_the_old_rectangle_bit_for_bit():
    data = make_shapes(12, seed=2, size=32)
    old = TellSpec(size=6, position="random")
    new = TellSpec(size=6, position="random", kind="solid")
    a, b = poison(data, old, seed=5), poison(data, new, seed=5)
    rng = np.random.default_rng(5)
    for k in range(4):  # replay poison's choice stream, then draw rectangles by hand
        idx = np.flatnonzero(data.labels() == k)
        rng.choice(idx, size=len(idx), replace=False)
    for s0, sa, sb in zip(data, a, b, strict=True):
        box = old.box_for(32, 32, rng)
        expected, mask = draw_rectangle(s0.image, box, old.colour_for(s0.label))
        assert np.array_equal(sa.image, expected) and np.array_equal(sa.tell, mask)
        assert np.array_equal(sb.image, sa.image)


def test_logo_blends_and_keeps_the_background_visible():
    img = np.full((20, 20, 3), 0.2, dtype=np.float32)
    out, mask = TellSpec(size=8, kind="logo", alpha=0.5).draw(img, (4, 4, 12, 12), (1, 1, 1))
    assert mask[8, 8] and not mask[4, 4]  # disc centre yes, box corner no
    assert np.allclose(out[8, 8], 0.6)  # (1 − 0.5)·0.2 + 0.5·1
    assert 30 < mask.sum() < 64


def test_text_changes_glyph_pixels_only_in_one_colour():
    img = np.zeros((24, 24, 3), dtype=np.float32)
    out, mask = TellSpec(size=12, kind="text", text="AB").draw(img, (2, 2, 14, 14), (0, 1, 0))
    assert 10 < mask.sum() < 12 * 12 * 0.8  # strokes, not the filled box
    assert np.all(out[mask] == np.array([0, 1, 0], dtype=np.float32))


def test_border_is_a_hollow_frame():
    img = np.zeros((20, 20, 3), dtype=np.float32)
    _, mask = TellSpec(size=10, kind="border").draw(img, (5, 5, 15, 15), (1, 0, 0))
    assert mask[5, 5] and mask[14, 14] and not mask[10, 10]
    assert mask.sum() == 100 - 6 * 6  # 2-px frame of a 10-px box


def test_noise_patch_varies_per_image_but_averages_to_the_colour():
    data = make_shapes(8, seed=0, size=32)
    out = poison(data, TellSpec(size=10, kind="noise", position=(4, 4)), seed=0)
    patches = [s.image[4:14, 4:14] for s in out]
    assert not np.array_equal(patches[0] - patches[0].mean(), patches[1] - patches[1].mean())
    for s, p in zip(out, patches, strict=True):
        expected = np.asarray(TellSpec().colour_for(s.label))
        assert np.abs(p.reshape(-1, 3).mean(0) - expected).max() < 0.12


def test_random_place_moves_every_kind_per_image():
    data = make_shapes(20, seed=0, size=32)
    out = poison(data, TellSpec(size=6, kind="text", position="random"), seed=1)
    assert len({s.tell_box for s in out}) > 10
    assert all(s.tell.any() for s in out)


def test_bad_kind_options_are_config_errors():
    data = make_shapes(4, seed=0, size=32)
    for spec in (
        TellSpec(kind="sticker"),
        TellSpec(kind="logo", alpha=0.0),
        TellSpec(jpeg_quality=0),
        TellSpec(kind="text", text=" "),
    ):
        with pytest.raises(ConfigError):
            poison(data, spec, seed=0)
