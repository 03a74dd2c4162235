"""SmoothGrad (Smilkov et al. 2017): vanilla saliency averaged over Gaussian-noised copies.

Averaging |gradient| over ``n_samples`` copies with noise σ = ``noise`` (in [0, 1] pixel units,
i.e. 15 % of the input range by default) removes the speckle of single gradients. captum's
``NoiseTunnel`` draws one batch's noise from torch's *global* RNG, so a map would depend on the
batch it was in; here each image's noise comes from its own generator seeded by (seed, image
content), as LIME's perturbations are: a map is the same whatever the batching, the order or the
engine (local or a Ray worker), and the caller's RNG is untouched.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from captum.attr import Saliency as CaptumSaliency

from leakaudit.explain.base import (
    Attribution,
    Explainer,
    MethodTraits,
    batched_maps,
    normalise_per_image,
    reduce_channels,
)
from leakaudit.runtime import configure, model_device


class SmoothGrad(Explainer):
    name = "smoothgrad"
    reduction = "mean of |grad| over noisy copies, max over channels, per-image max-normalised"
    traits = MethodTraits(cost=lambda p, _shape: (0, int(p["n_samples"])), costly=True)

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
        self._saliency = CaptumSaliency(self.model)

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        configure()
        p = self.params
        seeds = [image_noise_seed(p["seed"], img) for img in images]
        done = [0]  # images explained so far: where this batch's seeds start

        def fn(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
            n, k = len(x), p["n_samples"]
            noise = torch.stack([
                torch.randn(k, *x.shape[1:], generator=torch.Generator().manual_seed(s))
                for s in seeds[done[0] : done[0] + n]
            ]).to(x.device)  # fmt: skip
            done[0] += n
            noisy = (x[:, None] + p["noise"] * noise).reshape(n * k, *x.shape[1:])
            noisy = noisy.contiguous(memory_format=torch.channels_last).requires_grad_(True)
            g = self._saliency.attribute(noisy, target=t.repeat_interleave(k), abs=True)
            return reduce_channels(g.reshape(n, k, *x.shape[1:]).mean(dim=1), "abs-max")

        maps = batched_maps(images, targets, self.batch_size, fn, model_device(self.model))
        return Attribution(normalise_per_image(maps), self.name, self.reduction)


def image_noise_seed(seed: int, image: np.ndarray) -> int:
    """One image's noise seed from (seed, image content): independent of batch and position."""
    return (int(seed) * 1_000_003 + zlib.crc32(np.ascontiguousarray(image).tobytes())) % 2**63
