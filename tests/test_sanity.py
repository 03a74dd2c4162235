"""Cascading model-parameter randomisation: a model-dependent method passes, others fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from leakaudit.data.synthetic import make_shapes
from leakaudit.evidence.sanity import (
    DEFAULT_THRESHOLD,
    parameterised_modules,
    randomisation_check,
)
from leakaudit.explain.base import Attribution, Explainer, normalise_per_image
from leakaudit.models.train import train_classifier
from leakaudit.models.zoo import SmallCNN


@pytest.fixture(scope="module")
def trained():
    ds = make_shapes(400, seed=0, size=32)
    model = SmallCNN(4, width=8)
    train_classifier(model, ds.images(), ds.labels(), seed=0, epochs=10, progress=False)
    probe = make_shapes(16, seed=5, size=32)
    return model, probe.images(), probe.labels()


class EdgeDetector(Explainer):
    """Sobel magnitude of the image: ignores the model entirely."""

    name = "edges"
    reduction = "sobel magnitude, max over channels"

    def attribute(self, images, targets):
        g = np.hypot(ndimage.sobel(images, axis=1), ndimage.sobel(images, axis=2)).max(-1)
        return Attribution(normalise_per_image(g.astype(np.float32)), self.name, self.reduction)


class BiasOnly(nn.Module):
    """Output = a learnt bias, whatever the input (a model that ignores its input)."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(n_classes))

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1) + 0.0 * x.sum(dim=(1, 2, 3))[:, None]


def test_trained_cnn_saliency_passes(trained):
    model, images, labels = trained
    before = [p.detach().clone() for p in model.parameters()]
    res = randomisation_check(model, images, labels, "saliency", seed=0)
    assert res.passed, res.reason
    assert res.final_spearman < DEFAULT_THRESHOLD
    assert res.steps[0].layer == "head"  # output side first
    assert len(res.steps) == len(parameterised_modules(model))
    assert all(np.isfinite(s.ssim) for s in res.steps)
    # the audited model itself is untouched
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    again = randomisation_check(model, images, labels, "saliency", seed=0)
    assert [s.spearman for s in again.steps] == [s.spearman for s in res.steps]


def test_model_independent_explainer_fails(trained):
    model, images, labels = trained
    res = randomisation_check(model, images, labels, EdgeDetector, seed=0)
    assert not res.passed
    assert res.final_spearman == pytest.approx(1.0)


def test_model_ignoring_input_fails():
    images = make_shapes(8, seed=3, size=32).images()
    res = randomisation_check(BiasOnly(), images, np.zeros(8, dtype=int), "saliency", seed=0)
    assert not res.passed and "constant" in res.reason
