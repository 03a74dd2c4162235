"""Occlusion (Zeiler & Fergus 2014) via captum's ``Occlusion``.

A square window (default side/8, i.e. 8 px at 64×64 — the size of a typical tell) slides with
stride window/2 over all channels at once; each pixel gets the mean drop of the target *logit*
over the windows covering it. Baseline: a constant (default grey 0.5, "no information" for
[0, 1] images); blur is not offered because a blurred solid tell still looks like the tell,
so hiding it by blur would not remove it. The channels are identical (one window covers all),
so the reduction keeps the absolute value of their mean: a tell may raise or lower the
target score, and either way the model reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from captum.attr import Occlusion as CaptumOcclusion

from leakaudit.explain.base import (
    Attribution,
    Explainer,
    MethodTraits,
    batched_maps,
    normalise_per_image,
)
from leakaudit.runtime import autocast, configure, model_device


def window_and_stride(params: dict[str, Any], shape: tuple[int, int]) -> tuple[int, int]:
    """The window side (default side/8, at least 2) and stride (default window/2)."""
    win = params.get("window") or max(2, min(shape) // 8)
    return win, params.get("stride") or max(1, win // 2)


def occlusion_cost(params: dict[str, Any], shape: tuple[int, int]) -> tuple[int, int]:
    """One forward for the unoccluded image plus one per window position."""
    h, w = shape
    win, stride = window_and_stride(params, shape)
    return 1 + ((h - win) // stride + 1) * ((w - win) // stride + 1), 0


class Occlusion(Explainer):
    name = "occlusion"
    reduction = "|mean logit change over channels|, per-image max-normalised"
    traits = MethodTraits(cost=occlusion_cost, costly=True, amp=True)

    def __init__(
        self,
        model: torch.nn.Module,
        window: int | None = None,
        stride: int | None = None,
        baseline: float = 0.5,
        batch_size: int = 32,
        perturbations_per_eval: int = 16,
        amp: bool = False,
    ) -> None:
        extra = {"amp": True} if amp else {}  # recorded (and cache-keyed) only when on
        super().__init__(model, window=window, stride=stride, baseline=baseline, **extra)
        self.batch_size = batch_size
        self.perturbations_per_eval = perturbations_per_eval
        self._captum = CaptumOcclusion(self.model)

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()
        c = images.shape[-1] if images.ndim == 4 else 3
        shape = tuple(images.shape[1:3]) if len(images) else (64, 64)
        win, stride = window_and_stride(self.params, shape)

        @torch.inference_mode()
        def fn(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            with autocast(x.device, bool(self.params.get("amp"))):
                a = self._captum.attribute(
                    x,
                    sliding_window_shapes=(c, win, win),
                    strides=(c, stride, stride),
                    baselines=float(self.params["baseline"]),
                    target=t,
                    perturbations_per_eval=self.perturbations_per_eval,
                )
            return a.float().mean(dim=1).abs().contiguous().cpu().numpy()

        maps = batched_maps(images, targets, self.batch_size, fn, model_device(self.model))
        return Attribution(normalise_per_image(maps), self.name, self.reduction)
