"""View 3: the input a class logit or a channel responds to most (activation maximisation).

Gradient ascent on the input, starting from seeded noise around mid-grey, with the three
regularisers that make the picture readable rather than adversarial noise (Mordvintsev et al.
2015; Olah et al. 2017): random jitter (the picture must work when shifted a few pixels),
multi-scale growth (optimise a coarse image first and upsample it, "octaves") and blur plus
decay toward grey (high frequencies and saturated extremes must keep earning their place).
Snapshots at several step counts (default 200 / 350 / 500, as in the founding studies) show
whether the picture has converged.

The image is optimised in the model's own input space, [0, 1] RGB, so a model wrapped with its
preprocessing (``ModelSpec.wrap``) is visualised in the colours a user sees; a visualisation
that paints a saturated square in a corner is a colour tell read from the weights alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leakaudit.errors import ConfigError
from leakaudit.insight.common import (
    InputShape,
    capture,
    gaussian_blur,
    logits_of,
    shift,
    to_hwc,
)
from leakaudit.runtime import configure

DEFAULT_STEPS = (200, 350, 500)


@dataclass(frozen=True)
class Target:
    """What to maximise: a class logit (``layer=None``) or a channel's spatial mean in a layer
    (a ReLU layer's channel through its pre-activation, so a channel dead on noise can grow)."""

    index: int
    layer: str | None = None

    def label(self, class_names: Sequence[str] | None = None) -> str:
        if self.layer is None:
            name = class_names[self.index] if class_names else str(self.index)
            return f"class {name}"
        return f"{self.layer} channel {self.index}"


@dataclass(frozen=True)
class AscentParams:
    """Regularisation and step size; the defaults were set once on the demo's SmallCNN at 64 px
    by eye (readable pictures, activation still rising at 500 steps) and are not tuned to any
    score. ``jitter`` None means side // 16 (at least 1 px)."""

    lr: float = 0.03  # step in [0, 1] pixel units per unit mean |gradient|
    jitter: int | None = None
    octaves: int = 3  # coarse-to-fine phases inside the first snapshot's steps
    octave_scale: float = 1.6
    blur_sigma: float = 0.5  # px; applied every ``blur_every`` steps
    blur_every: int = 4
    decay: float = 0.002  # pull toward mid-grey per step


@dataclass
class Visualisation:
    """Pictures (HWC in [0, 1]) after each step count, with the target's value at each."""

    target: Target
    steps: tuple[int, ...]
    images: list[np.ndarray] = field(default_factory=list)
    activation: list[float] = field(default_factory=list)
    start_activation: float = float("nan")


def _objective(model: nn.Module, x: torch.Tensor, targets: Sequence[Target]) -> torch.Tensor:
    """Per-image value of each image's own target, shape (B,)."""
    layers = sorted({t.layer for t in targets if t.layer is not None})
    with capture(model, layers, before_relu=True) as seen:
        out = logits_of(model(x))
    vals = []
    for b, t in enumerate(targets):
        a = out[b] if t.layer is None else seen[t.layer][b]
        if t.index < 0 or t.index >= a.shape[0]:
            where = "the output" if t.layer is None else f"layer {t.layer}"
            raise ConfigError(f"index {t.index} is out of range for {where} ({a.shape[0]})")
        vals.append(a[t.index].float().mean())
    return torch.stack(vals)


def octave_sizes(side: int, octaves: int, scale: float) -> list[int]:
    """Coarse-to-fine sides ending at ``side`` (never below 4 px, duplicates dropped)."""
    sizes = [max(4, round(side / scale ** (octaves - 1 - k))) for k in range(max(1, octaves))]
    sizes = [min(s, side) for s in sizes]
    return sorted(set(sizes))


def _start_noise(
    targets: Sequence[Target], chw: tuple[int, int, int], gen: torch.Generator, seed: int
) -> torch.Tensor:
    """Seeded grey noise, one image per target. Targets are drawn in groups (the class logits,
    then each layer's channels, in order of first appearance): the first group from ``gen``
    (which then draws the jitter, as when it runs alone), every later group from its own
    generator. So the first group's pictures do not depend on what is batched after it: the
    page batches a model's class and channel ascents into one optimisation and its class
    pictures are still the witness's (``class_visualisations`` alone)."""
    groups: dict[str | None, list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(t.layer, []).append(i)
    x = torch.empty(len(targets), *chw)
    for g, idx in enumerate(groups.values()):
        draw = gen if g == 0 else torch.Generator().manual_seed(seed + _GROUP_SEED * g)
        x[idx] = 0.5 + 0.1 * torch.randn(len(idx), *chw, generator=draw)
    return x.clamp(0, 1)


_GROUP_SEED = 1_000_003  # offset between the noise generators of batched target groups


def activation_maximisation(
    model: nn.Module,
    targets: Sequence[Target],
    shape: InputShape,
    steps: Sequence[int] = DEFAULT_STEPS,
    seed: int = 0,
    params: AscentParams | None = None,
) -> list[Visualisation]:
    """Maximise each target in its own image (all in one batch); snapshots at ``steps``.
    Each image is optimised on its own (its own gradient scale; the same jitter, blur and
    decay), so batching targets is only faster: class targets listed first get the pictures
    they get alone, whatever channel targets follow (``_start_noise``).

    The octave phases fit inside the first snapshot's step count, so every snapshot is a
    full-resolution picture and later ones show the same picture refined further."""
    p = params or AscentParams()
    steps = tuple(sorted({int(s) for s in steps}))
    if not steps or steps[0] < 1:
        raise ConfigError(f"step counts must be ≥ 1, got {steps}")
    if not targets:
        return []
    configure()
    model.eval()
    c, h, w = shape
    gen = torch.Generator().manual_seed(int(seed))
    sides = octave_sizes(h, p.octaves, p.octave_scale)
    bounds = [int(steps[0] * k / len(sides)) for k in range(len(sides))]
    jitter = p.jitter if p.jitter is not None else max(1, h // 16)
    x = _start_noise(targets, (c, sides[0], round(sides[0] * w / h)), gen, int(seed))
    result = [Visualisation(t, steps) for t in targets]

    def full(z: torch.Tensor) -> torch.Tensor:
        if z.shape[-2:] == (h, w):
            return z
        return F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)

    with torch.no_grad():
        start = _objective(model, full(x), targets)
    for r, v in zip(result, start.tolist(), strict=True):
        r.start_activation = float(v)
    octave = 0
    for step in range(1, steps[-1] + 1):
        while octave + 1 < len(sides) and step - 1 >= bounds[octave + 1]:
            octave += 1
            s = sides[octave]
            x = F.interpolate(x, size=(s, round(s * w / h)), mode="bilinear", align_corners=False)
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
        xv = x.detach().requires_grad_(True)
        inp = shift(full(xv), dy, dx)
        _objective(model, inp, targets).sum().backward()
        g = xv.grad
        with torch.no_grad():
            g = g / (g.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-12)
            x = xv.detach() + p.lr * g
            x = 0.5 + (x - 0.5) * (1 - p.decay)
            if p.blur_every > 0 and step % p.blur_every == 0:
                x = gaussian_blur(x, p.blur_sigma)
            x = x.clamp(0, 1)
        if step in steps:
            with torch.no_grad():
                xf = full(x)
                vals = _objective(model, xf, targets).tolist()
            for r, img, v in zip(result, to_hwc(xf), vals, strict=True):
                r.images.append(img)
                r.activation.append(float(v))
    return result


def class_visualisations(
    model: nn.Module,
    n_classes: int,
    shape: InputShape,
    steps: Sequence[int] = DEFAULT_STEPS,
    seed: int = 0,
    params: AscentParams | None = None,
) -> list[Visualisation]:
    """One visualisation per class logit (the audit's "what does class k look like")."""
    targets = [Target(k) for k in range(n_classes)]
    return activation_maximisation(model, targets, shape, steps, seed, params)
