"""Grad-CAM (Selvaraju et al. 2017) via captum's ``LayerGradCam``.

Default layer: the model's *last* ``Conv2d`` (found by walking ``named_modules``), the deepest
layer that still has a spatial layout. Or pass ``layer="features.12"`` (a module name). The
class-weighted activation sum is ReLU'd (evidence for the target), upsampled to the input size
bilinearly and max-normalised; at 64×64 input with three poolings the map is 8× coarser than
the image, so a small tell shows as a blob, not a box.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from leakaudit.explain.base import Attribution, Explainer, batched_maps, normalise_per_image
from leakaudit.runtime import configure


def last_conv(model: nn.Module) -> str:
    """Name of the last ``nn.Conv2d`` in registration order (ValueError if there is none)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not names:
        raise ValueError("Grad-CAM needs a Conv2d layer; the model has none")
    return names[-1]


class GradCam(Explainer):
    name = "gradcam"
    reduction = "ReLU(sum_k alpha_k A_k) at the layer, bilinear upsampling, per-image max-norm"

    def __init__(self, model: torch.nn.Module, layer: str | None = None, batch_size: int = 128):
        layer = layer or last_conv(model)
        super().__init__(model, layer=layer)
        self.batch_size = batch_size
        self._captum = LayerGradCam(self.model, self.model.get_submodule(layer))

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()
        size = tuple(images.shape[1:3])

        def fn(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            cam = self._captum.attribute(x, target=t, relu_attributions=True)
            up = LayerAttribution.interpolate(cam.detach(), size, interpolate_mode="bilinear")
            return up[:, 0].clamp_min(0).contiguous().numpy()

        maps = batched_maps(images, targets, self.batch_size, fn)
        return Attribution(normalise_per_image(maps), self.name, self.reduction)
