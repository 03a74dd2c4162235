"""The one contract every attribution method keeps (captum's ``attribute(inputs, target)``).

Inputs are float32 NHWC images in [0, 1] (numpy, the system's edge format) and integer targets;
the output is one float32 HW map per image, after a *named* channel reduction, plus optional
method-specific extras (LIME's segments and weights). Scores see the maps, and — for the
metrics that rank pixels — ``Attribution.rank_keys()`` where a method's top differs from the
map's maximum (LIME: the highest-weighted superpixel).

Each explainer class also declares its *traits* once (``MethodTraits``: cost per image, costly
or not, AMP, layer, what the model needs, sanity-check caps, CLI options); ``registry.traits``
exposes them to the budget, the sanity step and the CLI, so adding a method is one file and
one registry line.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
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

    def rank_keys(self) -> np.ndarray | None:
        """(N, H, W) float32 keys that say which pixels are "top", or None when the maps say it
        themselves. LIME (extras ``segments`` and ``weights``): each pixel's superpixel weight,
        so the top is the highest-weighted superpixel, while the map keeps weight / area for
        the mass scores (``evidence/metrics.py``, ``rank=``)."""
        seg, w = self.extras.get("segments"), self.extras.get("weights")
        if seg is None or w is None or len(seg) != len(self.maps):
            return None
        seg = np.asarray(seg, dtype=np.int64)
        flat = seg.reshape(len(seg), -1)
        keys = np.take_along_axis(np.asarray(w, dtype=np.float32), flat, axis=1)
        return keys.reshape(seg.shape)


Cost = Callable[[Mapping[str, Any], tuple[int, int]], tuple[int, int]]


def one_gradient(_params: Mapping[str, Any], _shape: tuple[int, int]) -> tuple[int, int]:
    """Cost of a method that takes one forward+backward pass per image."""
    return 0, 1


@dataclass(frozen=True)
class CliOption:
    """A method parameter the command line exposes, declared once on the method:
    ``--lime-samples`` sets ``n_samples`` (default ``default``); ``key`` is its name in the
    audit's options and the TOML config (default: the flag without dashes, ``_`` for ``-``)."""

    flag: str
    param: str
    default: Any
    help: str
    type: type = int
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    key: str = ""

    @property
    def option_key(self) -> str:
        return self.key or self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class MethodTraits:
    """What the rest of the audit needs to know about a method, declared once on its class.

    ``cost(params, (h, w))`` → (forward-only passes, forward+backward passes) per image, with
    ``params`` the method's parameters with its defaults filled in; ``costly``: sampled and run
    last under a time budget, checked on fewer images by the sanity step; ``amp``: takes
    ``amp=True`` (mixed precision on a GPU); ``layer``: takes ``layer=`` (``--layer``);
    ``needs``: what the model must have, in words ('' = any model; otherwise the explainer
    raises ``NotApplicable``); ``sanity_caps``: upper bounds on parameters for the randomisation
    check (cost: LIME at most 200 samples); ``cli``: the options the CLI exposes."""

    cost: Cost = one_gradient
    costly: bool = False
    amp: bool = False
    layer: bool = False
    needs: str = ""
    sanity_caps: Mapping[str, int] = field(default_factory=dict)
    cli: tuple[CliOption, ...] = ()


class Explainer(ABC):
    """Base class: subclasses set ``name``/``reduction`` and implement ``attribute``."""

    name: ClassVar[str]
    reduction: ClassVar[str]
    traits: ClassVar[MethodTraits] = MethodTraits()

    def __init__(self, model: nn.Module, **params: Any) -> None:
        self.model = model.eval()
        self.params = dict(params)

    @abstractmethod
    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        """Explain ``targets[i]`` for ``images[i]``; images NHWC float32 in [0, 1]."""

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The keyword parameters of ``__init__`` and their defaults (declared once, there)."""
        sig = inspect.signature(cls.__init__)
        return {
            n: p.default
            for n, p in list(sig.parameters.items())[2:]  # after self, model
            if p.default is not inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

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
    from leakaudit.models.predict import to_tensor  # local: models imports nothing from explain

    out = []
    targets = np.asarray(targets, dtype=np.int64)
    for start in range(0, len(images), batch_size):
        x = to_tensor(images[start : start + batch_size], device)
        t = torch.from_numpy(targets[start : start + batch_size]).to(x.device)
        out.append(fn(x, t))
    if not out:
        return np.zeros((0, *images.shape[1:3]), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
