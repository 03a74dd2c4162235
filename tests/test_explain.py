"""Every registered method: contract (shape, dtype, finite, seeded determinism) and locality.

Locality uses a hand-set model that by construction reads only one 8×8 patch: a fixed mask
zeroes everything else before a positive conv, so any faithful method must put its attribution
there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.explain import EXPLAINERS, make_explainer

SIZE = 32
PATCH = (slice(8, 16), slice(16, 24))

# small, fast settings per method (defaults are for real runs)
FAST: dict[str, dict] = {
    "smoothgrad": {"n_samples": 4},
    "integrated_gradients": {"steps": 8},
    "lime": {"n_samples": 200, "n_segments": 30},
    "occlusion": {"window": 4},
}

# LIME works on superpixels: one that straddles the patch edge legitimately carries weight
# mostly outside it, so its share bar is lower (its top superpixel is checked separately).
MIN_SHARE = {"lime": 0.5}


class PatchModel(nn.Module):
    """Two classes; logit 0 = +mean of ReLU(conv(x · patch mask)), logit 1 = its negative."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(1, 1, SIZE, SIZE)
        mask[..., PATCH[0], PATCH[1]] = 1.0
        self.register_buffer("mask", mask)
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.rand(self.conv.weight.shape, generator=torch.Generator().manual_seed(0))
            )
        self.head = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.conv(x * self.mask))
        return self.head(f.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """8×8 blocks of random colour (+ light noise): superpixels can align with the patch."""
    rng = np.random.default_rng(0)
    blocks = rng.uniform(0.1, 1.0, size=(3, SIZE // 8, SIZE // 8, 3))
    img = blocks.repeat(8, axis=1).repeat(8, axis=2) + rng.normal(0, 0.02, (3, SIZE, SIZE, 3))
    img[:, PATCH[0], PATCH[1]] = 0.95  # a bright patch: hiding it clearly changes the score
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return PatchModel().eval()


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_contract_and_determinism(name: str, model: nn.Module, images: np.ndarray) -> None:
    targets = np.zeros(len(images), dtype=np.int64)
    a = make_explainer(name, model, **FAST.get(name, {})).attribute(images, targets)
    b = make_explainer(name, model, **FAST.get(name, {})).attribute(images, targets)
    assert a.maps.shape == (len(images), SIZE, SIZE)
    assert a.maps.dtype == np.float32
    assert np.isfinite(a.maps).all()
    assert a.method == name and a.reduction
    np.testing.assert_array_equal(a.maps, b.maps)


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_attribution_lands_on_the_patch(name: str, model: nn.Module, images: np.ndarray) -> None:
    targets = np.zeros(len(images), dtype=np.int64)
    maps = make_explainer(name, model, **FAST.get(name, {})).attribute(images, targets).maps
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    # one pixel of slack: the conv (and Grad-CAM's upsampling) reach one pixel past the patch
    inside[PATCH[0].start - 1 : PATCH[0].stop + 1, PATCH[1].start - 1 : PATCH[1].stop + 1] = True
    for m in maps:
        pos = np.abs(m)  # LIME is signed; hiding a patch may raise or lower the score
        share = pos[inside].sum() / max(pos.sum(), 1e-12)
        assert share > MIN_SHARE.get(name, 0.8), f"{name}: only {share:.2f} on the patch"


def test_smoothgrad_leaves_global_rng_alone(model: nn.Module, images: np.ndarray) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_explainer("smoothgrad", model, n_samples=2).attribute(images, np.zeros(3, np.int64))
    assert torch.equal(torch.rand(3), expected)


def test_lime_top_superpixel_is_the_patch(model: nn.Module, images: np.ndarray) -> None:
    a = make_explainer("lime", model, **FAST["lime"]).attribute(images, np.zeros(3, np.int64))
    for seg, w in zip(a.extras["segments"], a.extras["weights"], strict=True):
        top = int(np.nanargmax(np.abs(w)))
        assert (seg[PATCH] == top).mean() > 0.5


def test_smoothgrad_seed_changes_noise(images: np.ndarray) -> None:
    from leakaudit.models.zoo import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(2).eval()
    t = np.zeros(3, np.int64)
    a = make_explainer("smoothgrad", model, n_samples=2, seed=0).attribute(images, t).maps
    b = make_explainer("smoothgrad", model, n_samples=2, seed=1).attribute(images, t).maps
    assert not np.array_equal(a, b)


def test_smoothgrad_noise_follows_the_image_not_its_batch(images: np.ndarray) -> None:
    """Engines cut batches differently (issue 17): an image's map must not depend on its
    neighbours or position, only on (seed, image)."""
    from leakaudit.models.zoo import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(2).eval()
    sg = make_explainer("smoothgrad", model, n_samples=3, seed=4)
    t = np.zeros(3, np.int64)
    together = sg.attribute(images, t).maps
    reversed_ = sg.attribute(images[::-1].copy(), t).maps[::-1]
    alone = np.concatenate([sg.attribute(images[i : i + 1], t[:1]).maps for i in range(3)])
    np.testing.assert_allclose(reversed_, together, atol=1e-6)
    np.testing.assert_allclose(alone, together, atol=1e-6)
    assert not np.allclose(together[0], together[1])  # different images, different noise


def test_gradcam_finds_last_conv() -> None:
    from leakaudit.explain.gradcam import last_conv
    from leakaudit.models.zoo import SmallCNN

    assert last_conv(SmallCNN(3)) == "features.12"


def test_gradcam_default_layer_is_the_block_output() -> None:
    from leakaudit.explain.gradcam import default_layer
    from leakaudit.explain.registry import make_explainer
    from leakaudit.models.zoo import SmallCNN

    model = SmallCNN(3)
    assert default_layer(model) == "features.14"  # conv-BN-ReLU: after the ReLU
    assert make_explainer("gradcam", model).params["layer"] == "features.14"
    assert make_explainer("gradcam", model, layer="features.12").params["layer"] == "features.12"
