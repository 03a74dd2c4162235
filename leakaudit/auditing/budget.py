"""Plan the expensive work before doing it: measured throughput, estimated time, a time budget.

One batch of real images is pushed through the model once forward and once forward+backward;
every method's cost is a count of such passes per image (LIME: ``n_samples`` forwards;
integrated gradients: ``steps`` forward+backward; Grad-CAM: one), so the estimate is
``count × measured seconds per pass × images``. It is a plan, printed before the work so a user
can stop a 6-hour run after 10 seconds — not a promise: SLIC, scoring and the Python around
the passes come on top (measured at 224 px: a few per cent for LIME).

With a budget, the audit's other steps (tell removal and swap, suspect tests, region ablation,
the sanity check: ``reserve``) are taken off first, so the budget bounds the whole audit and not
only its attributions; the *cheap* methods (one pass per image) cover every image; what is left
of the budget is split evenly over the *costly* methods, each of which explains a stratified, seeded
sample of as many images as its share affords (at least ``MIN_PER_CLASS`` per class). Their
means are then reported with bootstrap 95 % intervals and the sample size.

The plan is printed first; the costly methods then run *last* (``MethodPlan.deferred``), and
their counts are fixed from the time the other steps really left (an estimate of the other
steps missed by 50 % on a 224-px audit, docs/scale.md), so the estimate can only be wrong by
the costly methods' own error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from leakaudit.errors import ConfigError
from leakaudit.models.train import as_logits, to_tensor
from leakaudit.runtime import autocast, model_device

COSTLY = ("lime", "occlusion", "integrated_gradients", "smoothgrad")
TIMED_PASSES = 3  # per kind of pass, after a warm-up; the plan uses their median
MIN_PER_CLASS = 2  # a per-class mean needs more than one image to have any spread


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_SPELLINGS = {"h": ("h", "hr", "hrs", "hour", "hours"), "m": ("m", "min", "mins", "minute",
              "minutes"), "s": ("s", "sec", "secs", "second", "seconds")}  # fmt: skip
_TERM = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*")
DURATION_FORM = "a positive number and a unit: 15m, 90s, 2.5h (or 1h30m; a bare number: seconds)"


def parse_duration(text: str | float | int | None) -> float | None:
    """``"15m"``, ``"90s"``, ``"1h30m"``, ``"2.5h"`` or plain seconds → seconds (None stays).

    Strict on purpose: each term is one number and one unit, hours before minutes before
    seconds, each unit once; ``1.2.3m`` or ``5mh`` were once read as some other budget."""
    if text is None:
        return None
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ConfigError(f"budget: expected {DURATION_FORM}, got {type(text).__name__} {text!r}")
    seconds = float(text) if isinstance(text, (int, float)) else _duration_text(text)
    if not np.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"budget: must be a positive duration, got {text!r}; use {DURATION_FORM}")
    return seconds


def _duration_text(text: str) -> float:
    s, pos, seconds, order = text.strip().lower(), 0, 0.0, "hms"
    terms = []
    while pos < len(s):
        m = _TERM.match(s, pos)
        if not m:
            break
        terms.append(m.groups())
        pos = m.end()
    units = [next((u for u, names in _SPELLINGS.items() if unit in names), None)
             for _, unit in terms]  # fmt: skip
    bare = len(terms) == 1 and terms[0][1] == ""
    ranks = [order.index(u) for u in units if u is not None]
    ok = (s and pos == len(s) and terms and (bare or None not in units)
          and ranks == sorted(set(ranks)))  # fmt: skip
    if not ok:
        raise ConfigError(f"budget: cannot read {text!r}; use {DURATION_FORM}")
    for (number, _), unit in zip(terms, units, strict=True):
        seconds += float(number) * _UNITS.get(unit or "s", 1.0)
    return seconds


def passes_per_image(
    method: str, params: dict[str, Any], shape: tuple[int, int]
) -> tuple[int, int]:
    """(forward-only passes, forward+backward passes) one image costs under ``method``."""
    h, w = shape
    if method == "lime":
        return int(params.get("n_samples", 500)), 0
    if method == "occlusion":
        win = params.get("window") or max(2, min(h, w) // 8)
        stride = params.get("stride") or max(1, win // 2)
        return 1 + ((h - win) // stride + 1) * ((w - win) // stride + 1), 0
    if method == "integrated_gradients":
        return 0, int(params.get("steps", 32))
    if method == "smoothgrad":
        return 0, int(params.get("n_samples", 16))
    return 0, 1  # saliency, input_x_gradient, gradcam: one gradient per image


@dataclass
class MethodPlan:
    method: str
    forwards: int  # per image
    backwards: int  # per image (forward+backward passes)
    n_total: int
    n_planned: int
    per_image_s: float  # estimated seconds per image
    # runs after the audit's other steps, on the images the budget has left time for then
    deferred: bool = False

    @property
    def seconds(self) -> float:
        """Estimated for the planned images."""
        return self.n_planned * self.per_image_s

    def _cover(self) -> str:
        if self.n_planned >= self.n_total:
            return f"all {self.n_total} images"
        return f"{self.n_planned} of {self.n_total} images (stratified sample)"

    def line(self) -> str:
        cost = []
        if self.forwards:
            cost.append(f"{self.forwards} forward")
        if self.backwards:
            cost.append(f"{self.backwards} forward+backward")
        cover = f"about {self._cover()}" if self.deferred else self._cover()
        last = "; runs last, on the time the other steps leave" if self.deferred else ""
        return (
            f"plan: {self.method:<22} {' + '.join(cost)} pass(es)/image × {cover}"
            f" ≈ {fmt_seconds(self.seconds)}{last}"
        )

    def line_when_run(self, left_s: float) -> str:
        """The deferred method's count, fixed from what the budget had left."""
        return (
            f"plan: {self.method:<22} {fmt_seconds(max(left_s, 0.0))} of the budget left: "
            f"{self._cover()} ≈ {fmt_seconds(self.seconds)}"
        )


@dataclass
class Plan:
    """Measured pass times and, per method, how many images it explains."""

    forward_s: float  # seconds per image, forward only
    backward_s: float  # seconds per image, forward+backward
    batch: int
    budget_s: float | None
    shape: tuple[int, int] = (0, 0)  # image height, width
    methods: dict[str, MethodPlan] = field(default_factory=dict)
    reserved_s: float = 0.0  # the audit's other steps (see ``make_plan``'s ``reserve``)
    reserved_for: str = ""
    amp_forward_s: float | None = None  # seconds per image forward under ``--amp`` (when asked)

    def lines(self) -> list[str]:
        amp = f"{1 / self.amp_forward_s:.1f} img/s under --amp, " if self.amp_forward_s else ""
        head = (
            f"plan: measured {1 / self.forward_s:.1f} img/s forward, {amp}"
            f"{1 / self.backward_s:.1f} img/s forward+backward (batch {self.batch}); "
            + (f"budget {fmt_seconds(self.budget_s)}" if self.budget_s else "no time budget")
        )
        lines = [head, *(m.line() for m in self.methods.values())]
        if self.reserved_for:
            lines.append(f"plan: {'other steps':<22} {self.reserved_for} ≈ "
                         f"{fmt_seconds(self.reserved_s)}")  # fmt: skip
        return lines


def fmt_seconds(s: float | None) -> str:
    """Seconds as "42 s", "3.5 min" or "2.1 h" for plan lines."""
    if s is None or not np.isfinite(s):
        return "?"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def measure_passes(model: nn.Module, images: np.ndarray) -> tuple[float, float]:
    """Seconds per image for a forward pass and for forward+backward on one batch: the median of
    ``TIMED_PASSES`` after one warm-up pass each (first calls pay for allocation and TorchScript
    profiling; a single timed pass varied 2× between identical runs on a shared machine, and
    with it the number of images the budget gave LIME)."""
    device = model_device(model)
    x = to_tensor(images, device)
    fwd = _forward_seconds(model, x, amp=False)
    bwd = []
    for _ in range(1 + TIMED_PASSES):
        xg = x.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        torch.autograd.grad(as_logits(model(xg))[:, 0].sum(), xg)  # no parameter .grad left
        _sync(device)
        bwd.append(time.perf_counter() - t0)
    per_image = [float(np.median(t[1:])) / len(x) for t in (fwd, bwd)]
    return max(per_image[0], 1e-9), max(per_image[1], 1e-9)


def measure_amp_forward(model: nn.Module, images: np.ndarray) -> float:
    """Seconds per image for a forward pass under ``--amp``'s autocast: 3.2× faster than float32
    on a CPU with AMX, slower on one that emulates bfloat16, so it is timed, not assumed."""
    x = to_tensor(images, model_device(model))
    return max(float(np.median(_forward_seconds(model, x, amp=True)[1:])) / len(x), 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_seconds(model: nn.Module, x: torch.Tensor, amp: bool) -> list[float]:
    """Wall seconds of 1 + ``TIMED_PASSES`` forward passes of ``x`` (the first is a warm-up)."""
    device = model_device(model)
    out = []
    with torch.inference_mode(), autocast(device, amp):
        for _ in range(1 + TIMED_PASSES):
            t0 = time.perf_counter()
            as_logits(model(x))
            _sync(device)
            out.append(time.perf_counter() - t0)
    return out


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` samples, each class in proportion (at least ``MIN_PER_CLASS``
    where the class has that many), chosen with ``seed``."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        take = max(min(MIN_PER_CLASS, len(idx)), int(round(n * len(idx) / len(labels))))
        keep.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def make_plan(
    model: nn.Module,
    probe: np.ndarray,
    methods: dict[str, dict[str, Any]],
    n_images: int,
    budget_s: float | None,
    reserve: Callable[[Plan], tuple[float, str]] | None = None,
) -> Plan:
    """Measure on ``probe`` (one batch of real images) and split ``budget_s`` over methods.

    ``reserve(plan)`` → (seconds, what): the estimated time of the audit's steps that are not
    attributions, measured with the plan's pass times and taken off the budget first."""
    fwd, bwd = measure_passes(model, probe)
    shape = (int(probe.shape[1]), int(probe.shape[2]))
    plan = Plan(fwd, bwd, len(probe), budget_s, shape)
    if any(params.get("amp") for params in methods.values()):
        plan.amp_forward_s = measure_amp_forward(model, probe)
    if reserve is not None:
        plan.reserved_s, plan.reserved_for = reserve(plan)
    per_image = {}
    for m, params in methods.items():
        f, b = passes_per_image(m, params, shape)
        f_s = plan.amp_forward_s if params.get("amp") and plan.amp_forward_s else fwd
        per_image[m] = (f, b, f * f_s + b * bwd)
    cheap = [m for m in methods if m not in COSTLY]
    costly = [m for m in methods if m in COSTLY]
    left = None
    if budget_s is not None:
        left = budget_s - plan.reserved_s - sum(per_image[m][2] * n_images for m in cheap)
    for m in methods:
        f, b, cost = per_image[m]
        n = n_images
        if left is not None and m in costly:
            share = max(left, 0.0) / len(costly)
            n = min(n_images, int(share // cost)) if cost > 0 else n_images
        plan.methods[m] = MethodPlan(m, f, b, n_images, n, cost)
    return plan
