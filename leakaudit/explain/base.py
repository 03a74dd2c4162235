"""The one contract every attribution method keeps (captum's ``attribute(inputs, target)``).

Inputs are float32 NHWC images in [0, 1] (numpy, the system's edge format) and integer targets;
the output is one float32 HW map per image, after a *named* channel reduction, plus optional
method-specific extras (LIME's segments and weights). Scores only ever see the maps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn


class NotApplicable(Exception):
    """The method does not apply to this model (e.g. Grad-CAM on a model without conv layers).

    The audit sets the method aside with this message as the reason; it is not a crash."""


@dataclass
class Attribution:
    """Maps (N, H, W) float32; ``extras`` hold per-image arrays with a leading N axis."""

    maps: np.ndarray
    method: str
    reduction: str
    extras: dict[str, np.ndarray] = field(default_factory=dict)


class Explainer(ABC):
    """Base class: subclasses set ``name``/``reduction`` and implement ``attribute``."""

    name: ClassVar[str]
    reduction: ClassVar[str]

    def __init__(self, model: nn.Module, **params: Any) -> None:
        self.model = model.eval()
        self.params = dict(params)

    @abstractmethod
    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        """Explain ``targets[i]`` for ``images[i]``; images NHWC float32 in [0, 1]."""

    def describe(self) -> dict[str, Any]:
        """Name, reduction and parameters: recorded in reports and cache keys."""
        return {"method": self.name, "reduction": self.reduction, **self.params}


def normalise_per_image(maps: np.ndarray) -> np.ndarray:
    """Scale each non-negative map to [0, 1] by its maximum (all-zero maps stay zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    peak = np.where(peak > 0, peak, 1.0)
    return (maps / peak[:, None, None]).astype(np.float32)


REDUCTIONS = ("abs-max", "abs-sum", "sum-relu")


def reduce_channels(attr: torch.Tensor, how: str) -> np.ndarray:
    """(N, C, H, W) → (N, H, W) float32 numpy by a *named* rule, so reports can state it.

    ``abs-max``: largest |value| over channels (saliency display convention); ``abs-sum``: |sum|
    over channels (signed per-pixel contribution, sign dropped); ``sum-relu``: positive part of
    the channel sum (evidence *for* the target only).
    """
    a = attr.detach().float()
    if how == "abs-max":
        out = a.abs().amax(dim=1)
    elif how == "abs-sum":
        out = a.sum(dim=1).abs()
    elif how == "sum-relu":
        out = a.sum(dim=1).clamp_min(0)
    else:
        raise ValueError(f"unknown reduction {how!r}; choose from {REDUCTIONS}")
    return out.contiguous().cpu().numpy().astype(np.float32, copy=False)


def batched_maps(
    images: np.ndarray,
    targets: np.ndarray,
    batch_size: int,
    fn: Callable[[torch.Tensor, torch.Tensor], np.ndarray],
    device: torch.device | None = None,
) -> np.ndarray:
    """Apply ``fn(x NCHW channels_last, targets) -> (B, H, W)`` batch by batch; bounded memory.

    Tensors go to ``device`` (the model's); ``fn`` returns numpy on the CPU."""
    from leakaudit.models.train import to_tensor  # local: models imports nothing from explain

    out = []
    targets = np.asarray(targets, dtype=np.int64)
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], device)
        t = torch.from_numpy(targets[start : start + batch_size]).to(x.device)
        out.append(fn(x, t))
    if not out:
        return np.zeros((0, *images.shape[1:3]), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
