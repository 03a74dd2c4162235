"""View 1: first-layer weights as pictures.

A conv net's first filters are small RGB patches; a filter that is one saturated colour with no
spatial structure is a colour detector, the first thing a colour tell needs. For an MLP the first
layer's rows are input-shaped images (the MNIST-viewer convention), shown with each unit's bias
and its *mean influence*: the mean absolute weight from that unit to the next layer (how much
the unit's output moves the next layer; a unit with weights to nothing is noise, however
structured its picture looks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from leakaudit.insight.common import first_weight_layer, input_shape


@dataclass
class FilterView:
    """One picture per first-layer unit, HWC in the layer's own weight scale (signed)."""

    layer: str
    kind: str  # "conv" or "mlp"
    weights: np.ndarray  # (units, H, W, C) signed weights
    bias: np.ndarray | None  # (units,)
    influence: np.ndarray | None  # (units,) MLP only: mean |W_next[:, j]|
    colour_bias: np.ndarray  # (units, C): mean weight per input channel


def _next_linear(model: nn.Module, after: str) -> nn.Linear | None:
    seen = False
    for name, m in model.named_modules():
        if name == after:
            seen = True
        elif seen and isinstance(m, nn.Linear):
            return m
    return None


@torch.no_grad()
def first_layer_filters(model: nn.Module, size: int | None = None) -> FilterView:
    """First conv filters (units, kh, kw, C), or an MLP's first-layer rows reshaped to images."""
    name, layer = first_weight_layer(model)
    w = layer.weight.detach().float()
    b = layer.bias.detach().float().numpy().copy() if layer.bias is not None else None
    if isinstance(layer, nn.Conv2d):
        weights = w.permute(0, 2, 3, 1).numpy().copy()
        return FilterView(name, "conv", weights, b, None, weights.mean(axis=(1, 2)))
    c, h, wd = input_shape(model, size)
    weights = w.view(w.shape[0], c, h, wd).permute(0, 2, 3, 1).numpy().copy()
    nxt = _next_linear(model, name)
    influence = None
    if nxt is not None and nxt.in_features == w.shape[0]:
        influence = nxt.weight.detach().float().abs().mean(dim=0).numpy().copy()
    return FilterView(name, "mlp", weights, b, influence, weights.mean(axis=(1, 2)))
