"""Input × gradient (Shrikumar et al. 2016) via captum's ``InputXGradient``.

Per pixel, the first-order contribution x·∂y/∂x relative to a black image; the channel sum is
the pixel's signed contribution, its absolute value is kept (a tell may push either way) and
each map is max-normalised.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import InputXGradient as CaptumIxG

from leakaudit.explain.base import (
    Attribution,
    Explainer,
    MethodTraits,
    batched_maps,
    normalise_per_image,
    reduce_channels,
)
from leakaudit.runtime import configure, model_device


class InputXGradient(Explainer):
    name = "input_x_gradient"
    reduction = "|sum over channels| of x·grad, per-image max-normalised"
    traits = MethodTraits()  # one gradient per image; cheap; any differentiable model

    def __init__(self, model: torch.nn.Module, batch_size: int = 128) -> None:
        super().__init__(model)
        self.batch_size = batch_size
        self._captum = CaptumIxG(self.model)

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()

        def fn(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            return reduce_channels(
                self._captum.attribute(x.requires_grad_(True), target=t), "abs-sum"
            )

        maps = batched_maps(images, targets, self.batch_size, fn, model_device(self.model))
        return Attribution(normalise_per_image(maps), self.name, self.reduction)
