"""Vanilla gradient saliency (Simonyan et al. 2014) via captum's ``Saliency``.

|∂y_target/∂x|, reduced over colour channels by max, normalised to [0, 1] per image — the
display convention of the truck-cargo study and tf-keras-vis.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import Saliency as CaptumSaliency

from leakaudit.explain.base import Attribution, Explainer, MethodTraits, normalise_per_image
from leakaudit.models.predict import to_tensor
from leakaudit.runtime import configure, model_device


class Saliency(Explainer):
    name = "saliency"
    reduction = "abs, max over channels, per-image max-normalised"
    traits = MethodTraits()  # one gradient per image; cheap; any differentiable model

    def __init__(self, model: torch.nn.Module, batch_size: int = 128) -> None:
        super().__init__(model)
        self.batch_size = batch_size
        self._captum = CaptumSaliency(self.model)

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()
        out = []
        device = model_device(self.model)
        for start in range(0, len(images), self.batch_size):
            x = to_tensor(images[start : start + self.batch_size], device).requires_grad_(True)
            t = torch.as_tensor(np.asarray(targets[start : start + self.batch_size]), device=device)
            grads = self._captum.attribute(x, target=t, abs=True)
            out.append(grads.detach().amax(dim=1).cpu().numpy())
        maps = np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)
        return Attribution(normalise_per_image(maps), self.name, self.reduction)
