"""Known-answer tests for the look-inside views (leakaudit.insight); tiny models, CPU, seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.errors import ConfigError
from leakaudit.insight.activation_max import Target, activation_maximisation
from leakaudit.insight.compare_untrained import untrained_copy, view_distance
from leakaudit.insight.deepdream import deepdream
from leakaudit.insight.feature_maps import feature_maps
from leakaudit.insight.filters import first_layer_filters
from leakaudit.insight.pixel_influence import closed_form_influence, gradient_influence
from leakaudit.insight.viewer import classify
from leakaudit.models.load import Preprocessed


def tiny_cnn(seed: int = 0, n_classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, n_classes),
    ).eval()


def hand_mlp(act: nn.Module) -> nn.Sequential:
    """A 4-3-2 MLP on 1×2×2 images with hand-set weights."""
    m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), act, nn.Linear(3, 2))
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, -1, 3, 0], [0.5, 0.5, 0.5, 0.5]]))
        m[1].bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        m[3].weight.copy_(torch.tensor([[1.0, 2, 0], [-1, 0, 4]]))
        m[3].bias.zero_()
    return m.eval()


def test_closed_form_is_the_mnist_viewer_formula():
    m = hand_mlp(nn.Sigmoid())
    w0, w1 = m[1].weight.detach().numpy(), m[3].weight.detach().numpy()
    # img_i = Σ_j W0[j, :] · W1[i, j], written out as a loop
    expected = np.zeros((2, 4))
    for i in range(2):
        for j in range(3):
            expected[i] += w0[j] * w1[i, j]
    got = closed_form_influence(m)
    assert got.shape == (2, 2, 2, 1)
    np.testing.assert_allclose(got.reshape(2, 4), expected, atol=1e-12)
    np.testing.assert_allclose(expected[0], [1, -2, 6, 2])  # by hand: row 0 + 2·row 1


def test_mean_gradient_equals_closed_form_without_nonlinearity():
    m = hand_mlp(nn.Identity())
    images = np.random.default_rng(0).random((5, 2, 2, 1)).astype(np.float32)
    np.testing.assert_allclose(gradient_influence(m, images), closed_form_influence(m), atol=1e-6)
    relu = hand_mlp(nn.ReLU())  # through a ReLU it is the gated product, not the closed form
    assert not np.allclose(gradient_influence(relu, images * 0 - 1), closed_form_influence(relu))


def test_closed_form_folds_in_preprocessing_and_refuses_cnns():
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    wrapped = Preprocessed(lin, mean=(0.5, 0.4, 0.3), std=(0.5, 0.25, 2.0)).eval()
    images = np.random.default_rng(1).random((3, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(
        closed_form_influence(wrapped), gradient_influence(wrapped, images), atol=1e-5
    )
    with pytest.raises(ConfigError, match="linear model or an MLP"):
        closed_form_influence(tiny_cnn())


def test_filters_conv_and_mlp():
    v = first_layer_filters(tiny_cnn())
    assert v.kind == "conv" and v.weights.shape == (4, 3, 3, 3) and v.influence is None
    m = hand_mlp(nn.ReLU())
    f = first_layer_filters(m)
    assert f.kind == "mlp" and f.weights.shape == (3, 2, 2, 1)
    np.testing.assert_allclose(f.weights[1].ravel(), [0, -1, 3, 0])
    np.testing.assert_allclose(f.bias, [0.1, -0.2, 0.3], atol=1e-7)
    np.testing.assert_allclose(f.influence, [1.0, 1.0, 2.0])  # mean |W1[:, j]|


def test_feature_maps_shapes_and_determinism():
    m = tiny_cnn()
    images = np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)
    maps = feature_maps(m, images)
    assert list(maps) == ["1", "4"]  # the two ReLUs, in forward order
    assert maps["1"].shape == (2, 4, 8, 8) and maps["4"].shape == (2, 6, 4, 4)
    assert (maps["1"] >= 0).all()
    np.testing.assert_array_equal(maps["4"], feature_maps(m, images)["4"])
    with pytest.raises(ConfigError, match="unknown layer"):
        feature_maps(m, images, ["nope"])


def test_activation_maximisation_raises_its_target_and_is_seeded():
    m = tiny_cnn()
    targets = [Target(0), Target(2), Target(3, layer="4")]
    run = activation_maximisation(m, targets, (3, 16, 16), steps=(10, 30), seed=3)
    for v in run:
        assert len(v.images) == 2 and v.images[0].shape == (16, 16, 3)
        assert v.images[-1].min() >= 0 and v.images[-1].max() <= 1
        assert v.activation[-1] > v.start_activation
    again = activation_maximisation(m, targets, (3, 16, 16), steps=(10, 30), seed=3)
    other = activation_maximisation(m, targets, (3, 16, 16), steps=(10, 30), seed=4)
    np.testing.assert_array_equal(run[0].images[-1], again[0].images[-1])
    assert not np.array_equal(run[0].images[-1], other[0].images[-1])
    with pytest.raises(ConfigError, match="out of range"):
        activation_maximisation(m, [Target(9)], (3, 16, 16), steps=(2,))


def test_batching_class_and_channel_ascents_changes_no_picture():
    """The page optimises a model's class and channel pictures in one batch; each image keeps
    its own gradient scale and regularisers and the classes keep their own noise, so the class
    pictures are what the witness computes alone (up to float rounding)."""
    m = tiny_cnn()
    classes = [Target(k) for k in range(3)]
    channels = [Target(i, layer="4") for i in range(4)]
    both = activation_maximisation(m, classes + channels, (3, 16, 16), steps=(8, 20), seed=1)
    alone = activation_maximisation(m, classes, (3, 16, 16), steps=(8, 20), seed=1)
    for b, a in zip(both[:3], alone, strict=True):
        for x, y in zip(b.images, a.images, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-4)
    assert all(v.activation[-1] > v.start_activation for v in both[3:])
    again = activation_maximisation(m, classes + channels, (3, 16, 16), steps=(8, 20), seed=1)
    np.testing.assert_array_equal(both[-1].images[-1], again[-1].images[-1])  # seeded


def test_deepdream_amplifies_the_layer_and_is_seeded():
    m = tiny_cnn()
    image = np.random.default_rng(5).random((16, 16, 3)).astype(np.float32)
    d = deepdream(m, image, "4", octaves=2, steps_per_octave=5, seed=1)
    assert d.image.shape == image.shape and d.image.min() >= 0 and d.image.max() <= 1
    assert d.objective_after > d.objective_before
    again = deepdream(m, image, "4", octaves=2, steps_per_octave=5, seed=1)
    np.testing.assert_array_equal(d.image, again.image)


def test_viewer_probabilities_and_right_wrong():
    m = nn.Sequential(nn.Flatten(), nn.Linear(1, 2)).eval()
    with torch.no_grad():
        m[1].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        m[1].bias.zero_()
    images = np.array([1.0, -1.0, 0.5], np.float32).reshape(3, 1, 1, 1)
    rows = classify(m, images, np.array([0, 0, 1]))
    assert [r.predicted for r in rows] == [0, 1, 0]
    assert [r.correct for r in rows] == [True, False, False]
    np.testing.assert_allclose(rows[0].probs, [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))], 1e-6)
    assert classify(m, images)[0].correct is None


def test_untrained_copy_differs_and_leaves_the_model_alone():
    m = tiny_cnn()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fresh = untrained_copy(m, seed=0)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    d = view_distance(first_layer_filters(m).weights, first_layer_filters(fresh).weights)
    assert d > 0.5  # independent random draws: correlation near 0
    images = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    assert view_distance(gradient_influence(m, images), gradient_influence(fresh, images)) > 0.5
    again = untrained_copy(m, seed=0)
    assert torch.equal(again[0].weight, fresh[0].weight)


def test_view_distance_known_answers():
    a = np.arange(12.0).reshape(3, 4)
    assert view_distance(a, 3 * a + 1) == pytest.approx(0.0, abs=1e-12)
    assert view_distance(a, -a) == pytest.approx(2.0)
    assert np.isnan(view_distance(a, np.ones_like(a)))
