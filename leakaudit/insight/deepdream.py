"""View 4: DeepDream — amplify what a chosen layer already sees in a given image.

Gradient ascent on the image itself (not from noise) to raise the mean squared activation of a
layer, coarse to fine over octaves with random jitter (Mordvintsev et al. 2015). Where the dream
grows patterns shows what the layer reacts to in *this* image: a poisoned model's layers tend
to grow the tell's colour in the tell's corner. Seeded; the image stays in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leakaudit.insight.activation_max import octave_sizes
from leakaudit.insight.common import batch_tensor, capture, shift, to_hwc


@dataclass
class Dream:
    image: np.ndarray  # HWC in [0, 1]
    layer: str
    objective_before: float  # mean squared activation of the layer on the original image
    objective_after: float


def _layer_energy(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    with capture(model, [layer]) as seen:
        model(x)
    return seen[layer].float().pow(2).mean()


def deepdream(
    model: nn.Module,
    image: np.ndarray,
    layer: str,
    octaves: int = 3,
    octave_scale: float = 1.4,
    steps_per_octave: int = 20,
    lr: float = 0.01,
    jitter: int | None = None,
    seed: int = 0,
) -> Dream:
    """Dream ``image`` (HWC [0, 1]) through ``layer``; the model always sees full size, the
    optimised detail grows from the coarsest octave to the finest."""
    model.eval()
    base = batch_tensor(image[None])
    h, w = base.shape[-2:]
    gen = torch.Generator().manual_seed(int(seed))
    jitter = jitter if jitter is not None else max(1, h // 16)
    with torch.no_grad():
        before = float(_layer_energy(model, layer, base))
    detail = None
    x = base
    for side in octave_sizes(h, octaves, octave_scale):
        size = (side, round(side * w / h))
        small = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
        if detail is not None:
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            small = small + detail
        x = small.clamp(0, 1)
        for _ in range(steps_per_octave):
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
            xv = x.detach().requires_grad_(True)
            full = F.interpolate(xv, size=(h, w), mode="bilinear", align_corners=False)
            _layer_energy(model, layer, shift(full, dy, dx)).backward()
            g = xv.grad
            with torch.no_grad():
                x = (xv + lr * g / (g.abs().mean() + 1e-12)).clamp(0, 1)
        base_small = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
        detail = x.detach() - base_small
    with torch.no_grad():
        out = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
        after = float(_layer_energy(model, layer, out))
    return Dream(to_hwc(out)[0], layer, before, after)
