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

from leakaudit.auditing.audit_steps import AuditSteps
from leakaudit.data.samples import Dataset
from leakaudit.engines.work import stack_images
from leakaudit.errors import ConfigError
from leakaudit.evidence.ablation import ablate_region
from leakaudit.evidence.sanity import cascade_steps, parameterised_modules
from leakaudit.evidence.stats import MIN_PER_CLASS, stratified_sample  # noqa: F401 (importable from here)
from leakaudit.explain.registry import costly as costly_methods
from leakaudit.explain.registry import passes_per_image, sanity_params
from leakaudit.models.predict import as_logits, to_tensor
from leakaudit.runtime import autocast, model_device

TIMED_PASSES = 3  # per kind of pass, after a warm-up; the plan uses their median


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
    costly = list(costly_methods(list(methods)))
    cheap = [m for m in methods if m not in costly]
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


# ---------------------------------------------------------------- the audit's plan

SUSTAINED_S = 5.0  # a prediction pass this long is a rate measurement (warm-up is noise in it)
SUSPECT_PASSES = 4  # forwards per image for testing the top suspects (removal + swap), measured
# at 2.2 on the 1 000-crop audit of docs/scale.md (3 classes, one strong suspect), before each
# held suspect's swap added a control paste per image (not re-measured: one more per image)


def sanity_runs(
    methods: dict[str, dict[str, Any]], steps: AuditSteps, budgeted: bool, n: int
) -> list[tuple[str, dict[str, Any], int]]:
    """(method, parameters, number of images) per method: the one rule the sanity check and its
    plan line share. Under a time budget the costly methods use only the first
    ``steps.sanity_images_costly`` images."""
    out = []
    for method, kwargs in methods.items():
        k = min(n, steps.sanity_images)
        if budgeted and method in costly_methods([method]):
            k = min(k, steps.sanity_images_costly)
        out.append((method, sanity_params(method, kwargs), k))
    return out


def sanity_estimate(
    model: nn.Module,
    plan: Plan,
    methods: dict[str, dict[str, Any]],
    steps: AuditSteps,
    budgeted: bool,
    n: int,
) -> tuple[float, str]:
    """The randomisation check's estimated seconds at the plan's measured pass times, (steps + 1)
    explanations of its images per method, and its plan line."""
    n_steps = len(cascade_steps(len(parameterised_modules(model))))
    total = 0.0
    for method, params, k in sanity_runs(methods, steps, budgeted, n):
        f, b = passes_per_image(method, params, plan.shape)
        total += (n_steps + 1) * k * (f * plan.forward_s + b * plan.backward_s)
    what = f"{n_steps} randomisation steps × {len(methods)} method(s)"
    return total, f"plan: {'sanity check':<22} {what} ≈ {fmt_seconds(total)}"


class OtherSteps:
    """The plan's reserve: forwards of the tell tests (removal + a paste per other class), the
    suspect tests and region ablation, plus the sanity check, at the measured pass times.
    Called once by ``make_plan``; keeps the sanity check's plan line (``sanity_line``)."""

    def __init__(self, model: nn.Module, data: Dataset, methods: dict[str, dict[str, Any]],
                 steps: AuditSteps, budgeted: bool) -> None:  # fmt: skip
        self.model, self.methods, self.steps, self.budgeted = model, methods, steps, budgeted
        self.n, k = len(data), len(data.class_names)
        self.passes, self.what, self.fill_s = 0, [], 0.0
        if steps.behaviour and (n_tell := sum(s.has_tell for s in data)):
            self.passes += n_tell * k
            self.what.append("tell tests")
        if steps.discovery and steps.discovery_method in methods:
            self.passes += SUSPECT_PASSES * self.n
            self.what.append("suspect tests")
        if steps.ablation and (n_region := sum(bool(s.region.any()) for s in data)):
            self.passes += n_region
            self.what.append("region ablation")
            self.fill_s = n_region * fill_seconds(data)
        self.sanity_line = ""

    def __call__(self, plan: Plan) -> tuple[float, str]:
        seconds = self.passes * plan.forward_s + self.fill_s
        desc = f"{', '.join(self.what)}: {self.passes} forward passes" if self.what else ""
        if self.fill_s:
            desc += f" + the ablation fill ({self.fill_s:.0f} s)"
        if self.steps.sanity:
            sanity_s, self.sanity_line = sanity_estimate(
                self.model, plan, self.methods, self.steps, self.budgeted, self.n
            )
            seconds += sanity_s
            desc = f"{desc} + the sanity check" if desc else "the sanity check"
        return seconds, desc


def fill_seconds(data: Dataset, probes: int = 3) -> float:
    """Median time of region ablation's fill on a few images. Counting forward passes alone
    left it out of the plan, yet at 224 px its blur takes about as long as a ResNet-18 forward
    pass (31 ms; docs/scale.md, the recorded audit's overrun)."""
    times = []
    for s in data.samples:
        if len(times) == probes:
            break
        region = s.region
        if region.any():
            image = s.image
            t0 = time.perf_counter()
            ablate_region(image, region)
            times.append(time.perf_counter() - t0)
    return float(np.median(times)) if times else 0.0


@dataclass
class AuditPlan:
    """What the audit decided before the work: the measured plan (None when not planned), the
    costly methods that run last, the budgeted methods' samples and the lines to print."""

    plan: Plan | None
    deferred: list[str]
    covered: dict[str, np.ndarray] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def plan_audit(
    model: nn.Module, data: Dataset, methods: dict[str, dict[str, Any]], steps: AuditSteps,
    budget_s: float | None, batch_size: int, find_with: str | None, measure: bool,
) -> AuditPlan:  # fmt: skip
    """Under a budget the costly methods run last, on the time the other steps really left
    (discovery's own method, if costly, runs first: discovery needs its maps). With
    ``measure`` (and images), one batch is timed and the budget split (``make_plan``)."""
    find = steps.discovery and find_with is not None
    deferred = (
        [m for m in costly_methods(list(methods)) if not (find and m == find_with)]
        if budget_s is not None
        else []
    )
    out = AuditPlan(None, deferred)
    n = len(data)
    if not (n and measure):
        return out
    reserve = OtherSteps(model, data, methods, steps, budget_s is not None)
    probe = stack_images(data.samples[:batch_size])
    out.plan = make_plan(model, probe, methods, n, budget_s, reserve)
    labels = data.labels()
    for m, mp in out.plan.methods.items():
        mp.deferred = m in deferred
        if mp.n_planned < n:
            sample = stratified_sample(labels, mp.n_planned, steps.seed)
            mp.n_planned = len(sample)  # the per-class minimum may add a few
            if not mp.deferred:
                out.covered[m] = sample
    out.lines = out.plan.lines()
    if steps.sanity:
        out.lines.append(reserve.sanity_line)
    return out


def size_deferred(
    plan: Plan, later: list[str], left_s: float, predict_s: float, labels: np.ndarray, seed: int
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The deferred methods' samples, sized on the ``left_s`` seconds the budget has left, and
    their plan lines. The probe timed one batch for about a second; a prediction pass of
    several seconds measures the machine's sustained speed better (31 vs 38 img/s at 224 px on
    a busy machine, docs/scale.md): cost at the slower of the two."""
    n = len(labels)
    sustained = predict_s >= SUSTAINED_S
    slower = max(1.0, predict_s / n / plan.forward_s) if sustained else 1.0
    covered: dict[str, np.ndarray] = {}
    lines = []
    for m in later:
        share = max(left_s, 0.0) / len(later)
        plan.methods[m].per_image_s *= slower
        cost = plan.methods[m].per_image_s
        k = min(n, int(share // cost)) if cost > 0 else n
        if k < n:
            covered[m] = stratified_sample(labels, k, seed)
        plan.methods[m].n_planned = len(covered.get(m, labels))
        lines.append(plan.methods[m].line_when_run(left_s))
    return covered, lines
