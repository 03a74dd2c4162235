"""SmoothGrad (Smilkov et al. 2017): vanilla saliency averaged over Gaussian-noised copies.

Averaging |gradient| over ``n_samples`` copies with noise σ = ``noise`` (in [0, 1] pixel units,
i.e. 15 % of the input range by default) removes the speckle of single gradients. captum's
``NoiseTunnel`` draws noise from torch's *global* RNG, so each batch runs inside a forked RNG
seeded from (seed, batch start): calls are deterministic and leave the caller's RNG untouched.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import NoiseTunnel
from captum.attr import Saliency as CaptumSaliency

from leakaudit.explain.base import (
    Attribution,
    Explainer,
    batched_maps,
    normalise_per_image,
    reduce_channels,
)
from leakaudit.runtime import configure, model_device


class SmoothGrad(Explainer):
    name = "smoothgrad"
    reduction = "mean of |grad| over noisy copies, max over channels, per-image max-normalised"

    def __init__(
        self,
        model: torch.nn.Module,
        n_samples: int = 16,
        noise: float = 0.15,
        seed: int = 0,
        batch_size: int = 32,
    ) -> None:
        super().__init__(model, n_samples=n_samples, noise=noise, seed=seed)
        self.batch_size = batch_size
        self._nt = NoiseTunnel(CaptumSaliency(self.model))

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()
        p = self.params
        done = [0]  # images explained so far: the batch's offset seeds its noise

        def fn(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            cuda = [x.device.index or 0] if x.is_cuda else []  # noise is drawn on x's device
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(p["seed"] * 1_000_003 + done[0])
                g = self._nt.attribute(
                    x.requires_grad_(True),
                    nt_type="smoothgrad",
                    nt_samples=p["n_samples"],
                    stdevs=p["noise"],
                    target=t,
                    abs=True,
                )
            done[0] += len(x)
            return reduce_channels(g, "abs-max")

        maps = batched_maps(images, targets, self.batch_size, fn, model_device(self.model))
        return Attribution(normalise_per_image(maps), self.name, self.reduction)
