"""Batched LIME equals a plain per-image reference (numpy + sklearn Ridge) on the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from leakaudit.explain.lime import (
    Lime,
    baseline_image,
    image_seed,
    sample_masks,
    segment,
)
from leakaudit.models.zoo import SmallCNN


def reference_lime(model, image, target, seg, n_samples, seed, baseline, sampling, width=0.25):
    """lime_image's algorithm written out for one image, one sample at a time."""
    k = int(seg.max()) + 1
    z = sample_masks(image_seed(seed, image), n_samples, k, sampling)
    base = baseline_image(image, seg, baseline)
    ys = []
    with torch.no_grad():
        for row in z:
            keep = row[seg].astype(bool)[..., None]
            x = np.where(keep, image, base).astype(np.float32)
            logits = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
            ys.append(torch.softmax(logits, 1)[0, target].item())
    d = 1 - z.sum(1) / (np.sqrt(z.sum(1)) * np.sqrt(k))  # cosine distance to all-on
    d = np.nan_to_num(d, nan=1.0)  # the all-off row has no direction: distance 1
    w = np.ones(len(z)) if width is None else np.sqrt(np.exp(-(d**2) / width**2))
    return Ridge(alpha=1.0).fit(z, np.array(ys), sample_weight=w).coef_


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = SmallCNN(3, width=8).eval()
    from leakaudit.data.synthetic import make_shapes

    ds = make_shapes(5, seed=3, size=32, n_classes=3)
    return model, ds.images(), ds.labels()


@pytest.mark.parametrize(
    ("sampling", "baseline", "width"),
    [
        ("bernoulli", "blur", 0.25),
        ("antithetic", "mean", 0.25),
        ("balanced", "constant", 0.25),
        ("orthogonal", "blur", 0.25),
        ("orthogonal", "mean", None),
    ],
)
def test_batched_matches_reference(setup, sampling: str, baseline: str, width) -> None:
    model, images, labels = setup
    n = 120
    lime = Lime(
        model,
        n_samples=n,
        n_segments=20,
        baseline=baseline,
        sampling=sampling,
        kernel_width=width,
        seed=7,
        images_per_chunk=2,
        forward_batch=100,
    )
    att = lime.attribute(images, labels)
    for i, img in enumerate(images):
        seg = att.extras["segments"][i]
        np.testing.assert_array_equal(seg, segment(img, 20))
        ref = reference_lime(model, img, labels[i], seg, n, 7, baseline, sampling, width)
        k = len(ref)
        np.testing.assert_allclose(att.extras["weights"][i, :k], ref, rtol=1e-3, atol=2e-5)
        assert np.isnan(att.extras["weights"][i, k:]).all()
        area = np.bincount(seg.ravel())
        np.testing.assert_allclose(att.maps[i], (ref / area)[seg], rtol=1e-3, atol=1e-6)


def test_order_and_batching_do_not_matter(setup) -> None:
    model, images, labels = setup
    a = Lime(model, n_samples=60, n_segments=20, images_per_chunk=5).attribute(images, labels)
    rev = slice(None, None, -1)
    b = Lime(model, n_samples=60, n_segments=20, images_per_chunk=1).attribute(
        images[rev], labels[rev]
    )
    np.testing.assert_allclose(a.maps, b.maps[rev], rtol=1e-4, atol=1e-7)


def test_precomputed_segments_are_used(setup) -> None:
    model, images, labels = setup
    grid = np.broadcast_to(
        (np.arange(32)[:, None] // 8) * 4 + np.arange(32)[None, :] // 8, (len(images), 32, 32)
    )
    att = Lime(model, n_samples=40).attribute(images, labels, segments=grid)
    np.testing.assert_array_equal(att.extras["segments"], grid)
    assert att.extras["weights"].shape == (len(images), 16)


@pytest.mark.parametrize("sampling", ["bernoulli", "antithetic", "balanced", "orthogonal"])
def test_sampling_designs(sampling: str) -> None:
    z = sample_masks(np.random.default_rng(0), 101, 9, sampling)
    assert z.shape == (101, 9) and set(np.unique(z)) <= {0.0, 1.0}
    assert (z[0] == 1).all() or sampling == "orthogonal"  # its row 0 is half of a pair
    if sampling == "antithetic":
        np.testing.assert_array_equal(z[1:50], 1 - z[52:101])
    if sampling == "balanced":
        assert (np.abs(z[1:].sum(0) - 50) <= 1).all()
    if sampling == "orthogonal":
        np.testing.assert_array_equal(z[1:100:2], 1 - z[0:100:2])
