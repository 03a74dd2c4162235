"""View 5: pixel influence per class — which input pixels push each class's score up or down.

For a linear model or an MLP the founding MNIST viewer multiplies the weights backwards through
the net, ignoring biases and non-linearities: for a 784-30-10 net, class i's picture is
``img_i = Σ_j W0[j, :] · W1[i, j]``, i.e. row i of ``W1 @ W0``; deeper nets chain the product.
That is the gradient of logit i when every non-linearity is the identity. Through real
non-linearities the honest generalisation is the *mean input gradient* of logit i over a set of
images, which works for any differentiable model (and equals the closed form for a linear one).
A class whose influence picture is one bright corner reads that corner.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from leakaudit.errors import ConfigError
from leakaudit.insight.common import batch_tensor, input_shape, logits_of, named_layers
from leakaudit.models.load import Preprocessed

# Modules the closed form may pass through: they only reshape, or are non-linearities it ignores.
_PASS = (
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Softmax,
    nn.LogSoftmax,
)


@torch.no_grad()
def closed_form_influence(model: nn.Module, size: int | None = None) -> np.ndarray:
    """``W_L @ … @ W_1`` reshaped to (classes, H, W, C), in the [0, 1] input space.

    A ``Preprocessed`` wrapper's std scaling and BGR swap are folded in, so the picture is per
    user-visible pixel. Raises ``ConfigError`` for a model that is not linear layers plus
    element-wise non-linearities (use ``gradient_influence`` there)."""
    inner, std, bgr = model, None, False
    if isinstance(model, Preprocessed):
        inner, std, bgr = model.model, model.std.view(-1).float(), model.bgr
    layers = named_layers(inner)
    allowed = (*_PASS, nn.Linear)
    bad = [f"{n} ({type(m).__name__})" for n, m in layers.items() if not isinstance(m, allowed)]
    if bad:
        raise ConfigError(
            "the closed-form pixel influence needs a linear model or an MLP; this model has "
            + ", ".join(bad[:3])
            + " — use the mean-gradient influence instead"
        )
    linears = [m for m in layers.values() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("the model has no Linear layer")
    prod = linears[0].weight.double()
    for lin in linears[1:]:
        prod = lin.weight.double() @ prod
    c, h, w = input_shape(inner, size)
    maps = prod.view(prod.shape[0], c, h, w)
    if bgr:
        maps = maps.flip(1)  # the model's channel 0 is the user's blue
    if std is not None:
        maps = maps / std.double().view(1, -1, 1, 1)
    return maps.permute(0, 2, 3, 1).numpy().astype(np.float64)


def gradient_influence(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Mean over ``images`` of ∂logit_k/∂x for every class k: (classes, H, W, C), signed."""
    model.eval()
    if len(images) == 0:
        raise ConfigError("gradient pixel influence needs at least one image")
    total = None
    for start in range(0, len(images), batch_size):
        x = batch_tensor(images[start : start + batch_size]).requires_grad_(True)
        out = logits_of(model(x))
        grads = []
        for k in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, k].sum(), x, retain_graph=k + 1 < out.shape[1])
            grads.append(g.sum(dim=0))
        part = torch.stack(grads).double()
        total = part if total is None else total + part
    return (total / len(images)).permute(0, 2, 3, 1).numpy()
