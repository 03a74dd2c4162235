"""Integrated gradients (Sundararajan et al. 2017) via captum's ``IntegratedGradients``.

Baseline: ``"black"`` (all zeros, the paper's choice), ``"grey"`` (0.5 everywhere) or
``"blur"`` (the image blurred with σ = side/8, the same "information removed" reference as
LIME's default baseline). A black baseline gives zero attribution to black pixels by
construction, so a dark tell would be invisible; choose grey/blur when that matters.
``steps`` is the Gauss–Legendre quadrature order. The channel sum's absolute value is kept.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients as CaptumIG
from skimage.filters import gaussian

from leakaudit.explain.base import (
    Attribution,
    Explainer,
    MethodTraits,
    batched_maps,
    normalise_per_image,
    reduce_channels,
)
from leakaudit.runtime import configure, model_device

IG_BASELINES = ("black", "grey", "blur")


def _baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "grey":
        return torch.full_like(x, 0.5)
    sigma = max(x.shape[-2:]) / 8.0
    arr = x.detach().permute(0, 2, 3, 1).cpu().numpy()
    blurred = np.stack([gaussian(a, sigma=sigma, channel_axis=-1) for a in arr]).astype(np.float32)
    out = torch.from_numpy(blurred).permute(0, 3, 1, 2).to(x.device)
    return out.contiguous(memory_format=torch.channels_last)


class IntegratedGradients(Explainer):
    name = "integrated_gradients"
    reduction = "|sum over channels| of IG, per-image max-normalised"
    traits = MethodTraits(cost=lambda p, _shape: (0, int(p["steps"])), costly=True)

    def __init__(
        self,
        model: torch.nn.Module,
        steps: int = 32,
        baseline: str = "black",
        batch_size: int = 16,
    ) -> None:
        if baseline not in IG_BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; choose from {IG_BASELINES}")
        super().__init__(model, steps=steps, baseline=baseline)
        self.batch_size = batch_size
        self._captum = CaptumIG(self.model)

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()
        p = self.params

        def fn(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            ig = self._captum.attribute(
                x,
                baselines=_baseline(x, p["baseline"]),
                target=t,
                n_steps=p["steps"],
                internal_batch_size=max(len(x) * p["steps"], 1),
            )
            return reduce_channels(ig, "abs-sum")

        maps = batched_maps(images, targets, self.batch_size, fn, model_device(self.model))
        return Attribution(normalise_per_image(maps), self.name, self.reduction)
