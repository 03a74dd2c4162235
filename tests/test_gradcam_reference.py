"""Grad-CAM at the default layer (the block output, ``layer4.1`` on a ResNet-18) against captum's
``LayerGradCam`` on the same layer with the same ReLU, bilinear upsampling and per-image
max-normalisation, and against literals computed once (torch 2.13 / captum 0.9), so that a
silent change of either library — or of our default layer — is caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

from leakaudit.explain.gradcam import default_layer
from leakaudit.explain.registry import make_explainer
from leakaudit.models.zoo import build

SIZE = 64
PIXELS = ((0, 5, 7), (0, 32, 32), (0, 60, 3), (1, 17, 41), (1, 50, 50))
# computed once with torch 2.13.0+cpu, captum 0.9.0 (see module docstring)
REF_SUM = (3116.511, 2946.7622)
REF_PIXELS = (0.6290475, 0.7667155, 0.7694157, 0.7464542, 0.9999999)


@pytest.fixture(scope="module")
def case():
    model = build("resnet18", 3, seed=0).eval()
    x = np.random.default_rng(0).random((2, SIZE, SIZE, 3), dtype=np.float32)
    t = np.array([0, 2])
    return model, x, t


def _captum(model, x, t):
    layer = model.layer4[-1]
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    cam = LayerGradCam(model, layer).attribute(
        xt, target=torch.from_numpy(t), relu_attributions=True
    )
    cam = LayerAttribution.interpolate(cam.detach(), (SIZE, SIZE), "bilinear")[:, 0].numpy()
    peak = cam.reshape(len(cam), -1).max(1)[:, None, None]
    return cam / np.where(peak > 0, peak, 1)


def test_default_layer_is_the_last_block_output(case) -> None:
    model, _, _ = case
    assert default_layer(model) == "layer4.1"
    assert default_layer(torch.jit.script(model)) == "layer4.1"
    assert default_layer(build("small_cnn", 3, seed=0)) == "features.14"


def test_gradcam_default_equals_captum_layer_gradcam(case) -> None:
    model, x, t = case
    e = make_explainer("gradcam", model)
    assert e.params["layer"] == "layer4.1"
    ours = e.attribute(x, t).maps
    np.testing.assert_allclose(ours, _captum(model, x, t), atol=1e-5)
    scripted = make_explainer("gradcam", torch.jit.script(model)).attribute(x, t).maps
    np.testing.assert_allclose(scripted, ours, atol=1e-5)


def test_gradcam_default_matches_stored_numbers(case) -> None:
    model, x, t = case
    ours = make_explainer("gradcam", model).attribute(x, t).maps
    ref = _captum(model, x, t)
    for maps in (ours, ref):
        assert maps[0].sum() == pytest.approx(REF_SUM[0], abs=1e-3)
        assert maps[1].sum() == pytest.approx(REF_SUM[1], abs=1e-3)
        got = [float(maps[i, r, c]) for i, r, c in PIXELS]
        np.testing.assert_allclose(got, REF_PIXELS, atol=1e-5)
