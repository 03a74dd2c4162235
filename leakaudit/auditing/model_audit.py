"""Explain, score and judge one model on one evaluation set. Returns values; renders nothing.

``audit_model`` is a list of steps, each a function of plain values: plan (``budget.plan_audit``)
→ predict → explain (the engine: attributions, scores and the known-tell predictions) →
behaviour → discovery → suspects → sanity → ablation → the deferred costly methods → conditions.
The evaluation images are explained batch by batch; only per-sample scores and the few maps the
report's gallery shows are kept.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from leakaudit.auditing.audit_steps import AuditSteps
from leakaudit.auditing.budget import AuditPlan, plan_audit, sanity_runs, size_deferred
from leakaudit.auditing.predict_step import Predictions, predict, predict_all  # noqa: F401
from leakaudit.auditing.scores import (  # noqa: F401 (importable from here as before)
    gallery_stack,
    per_class_table,
    per_sample_table,
    sample_intervals,
    score_columns,
    summarise,
)
from leakaudit.auditing.verdict import Condition, Thresholds, judge, verdict
from leakaudit.data.samples import Dataset
from leakaudit.data.spill import SpilledStack
from leakaudit.engines import BEHAVIOUR, EngineOptions, Job, MethodResult, explain
from leakaudit.engines.work import COMPACT_SIDE, compact_shape  # noqa: F401
from leakaudit.evidence.ablation import region_ablation
from leakaudit.evidence.behaviour import known_tell_tests, tell_colours
from leakaudit.evidence.discovery_view import DISCOVERY_SIDE
from leakaudit.evidence.sanity import SanityResult, sanity_checks
from leakaudit.evidence.suspects import Suspect, check_suspects
from leakaudit.explain import make_explainer
from leakaudit.explain.base import Explainer, NotApplicable
from leakaudit.explain.cache import AttributionCache, model_fingerprint
from leakaudit.explain.registry import amp_methods, layer_methods
from leakaudit.explain.stream import peak_rss_mb
from leakaudit.runtime import AMP_CPU_WARNING, images_per_batch, model_device, release_freed_memory

__all__ = ["AuditSteps", "ModelAudit", "Suspect", "audit_model"]


@dataclass
class ModelAudit:
    """Everything measured for one model; ``per_sample`` has one row per (image, method)."""

    name: str
    accuracy: float  # on the model's own test set (given by the caller)
    eval_accuracy: float  # on the evaluation images that were explained
    per_sample: pd.DataFrame  # + ``confidence`` (p of the predicted class) and ``p_true``
    behaviour: dict[str, dict[str, float]]
    conditions: list[Condition]
    verdict: str
    method_params: dict[str, dict[str, Any]]
    gallery_maps: dict[str, np.ndarray]  # method -> (G, H, W) maps of the gallery images
    seconds: dict[str, float] = field(default_factory=dict)
    # the process's peak RSS (MiB) after each phase, in order: the phase where it jumps is the
    # one that set the peak (run_info.json; run-dependent, so never in summary.json)
    peak_mb: dict[str, float] = field(default_factory=dict)
    suspects: list[Suspect] = field(default_factory=list)
    sanity: dict[str, SanityResult] = field(default_factory=dict)
    ablation: dict[str, Any] = field(default_factory=dict)
    # method -> (N, h, w) float16: every audited image's map in data order, area-averaged to at
    # most COMPACT_SIDE px and divided by its largest |value| (float16 keeps ~3 digits in
    # [-1, 1]; LIME's raw per-pixel weights would underflow). Rows of images that a budgeted
    # method did not explain are NaN. 10 000 images × 64 × 64 × 2 B = 82 MB a method, so with a
    # spilled dataset they are a ``SpilledStack`` in the spill file (index it, or np.asarray).
    compact_maps: dict[str, np.ndarray | SpilledStack] = field(default_factory=dict)
    # methods that do not apply to this model (Grad-CAM without a conv layer) -> the reason
    set_aside: dict[str, str] = field(default_factory=dict)
    # methods that explained a budgeted sample only -> its sorted indices into the data
    covered: dict[str, np.ndarray] = field(default_factory=dict)
    plan: list[str] = field(default_factory=list)  # the plan lines printed before the work
    # `--insight`: each class's visualisation measured against the strong suspects
    # (insight.witness.class_witness); empty when not asked for
    insight: list[dict[str, Any]] = field(default_factory=list)
    # `--insight`: the class pictures behind it, (K, H, W, 3) uint8, and the full insight page
    # (insight.page.build_page's context), written beside the report by write_report
    insight_pictures: np.ndarray | None = None
    insight_page: dict[str, Any] | None = None
    seed: int = 0

    def method_means(self) -> dict[str, dict[str, float]]:
        out = summarise(self.per_sample)
        for method, idx in self.covered.items():  # a sample: say so, with bootstrap 95 % CIs
            if method in out:
                out[method].update(sample_intervals(self.per_sample, method, len(idx), self.seed))
        return out


@dataclass
class _Clock:
    """Wall seconds and peak RSS after each step, and the plan lines printed as they come."""

    name: str
    progress: bool
    seconds: dict[str, float] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def run(self, step: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[step] = time.perf_counter() - t0
        self.peak_mb[step] = peak_rss_mb()
        return out

    def say(self, lines: Sequence[str]) -> None:
        self.lines += lines
        if self.progress:
            for line in lines:
                print(f"{self.name}: {line}", file=sys.stderr)


def audit_model(
    model: nn.Module,
    name: str,
    data: Dataset,
    methods: dict[str, dict[str, Any]],
    accuracy: float,
    thresholds: Thresholds,
    colours: dict[int, tuple[float, float, float]] | None = None,
    gallery: Sequence[int] = (),
    batch_size: int = 64,
    progress: bool = True,
    checks: AuditSteps | None = None,
    cache: AttributionCache | None = None,
    device: torch.device | str | None = None,
    amp: bool = False,
    budget_s: float | None = None,
    layer: str | None = None,
    engine: EngineOptions | None = None,
) -> ModelAudit:
    """Explain every image of ``data`` for its true class with each method, score, judge.

    ``colours`` (class → tell colour) drive the swap test; by default they are read from the
    pixels under the known tell masks. With a ``cache``, attributions computed before for the
    same model, image, method and parameters are reused, so an interrupted audit resumes.
    ``device`` moves the model (None: leave it where it is); ``amp`` runs the forward passes of
    LIME and occlusion under autocast; ``budget_s`` limits the costly methods to a stratified
    sample (see ``budget.py``); ``layer`` is Grad-CAM's layer (default: the last conv);
    ``engine`` says where the per-sample work runs (``leakaudit/engines``: local or Ray)."""
    steps, n, clock = checks or AuditSteps(), len(data), _Clock(name, progress)
    started = time.perf_counter()  # a budget bounds the whole audit, predictions included
    model, pred = clock.run("predict", predict, model, name, data, device)
    model_hash = model_fingerprint(model) if cache is not None and cache.enabled else ""
    methods = {m: _with_options(m, kw, amp, layer) for m, kw in methods.items()}
    _warn_amp_on_cpu(model, name, methods, progress and bool(n) and amp)
    batch_size = images_per_batch(batch_size, data[0].shape[:2]) if n else batch_size
    find_with = steps.discovery_method if steps.discovery_method in methods else None
    plan = plan_audit(model, data, methods, steps, budget_s, batch_size, find_with,
                      measure=progress or budget_s is not None)  # fmt: skip
    clock.say(plan.lines)
    explainers, params, set_aside = _make_explainers(model, methods)
    find = steps.discovery and find_with is not None and find_with not in plan.covered
    keep_full = find_with if find and n and max(data[0].shape[:2]) <= DISCOVERY_SIDE else None
    known = _known_colours(data, colours) if steps.behaviour else None
    job = Job(name, model_hash, pred.labels, pred.preds, pred.confidence, pred.p_true,
              frozenset(gallery), batch_size, keep_full, progress, known or {})  # fmt: skip
    run_engine = _engine_runner(engine or EngineOptions(), job, model, methods, explainers, data,
                                cache)  # fmt: skip
    first = [m for m in explainers if m not in plan.deferred]
    done = clock.run("engine", run_engine, first, plan.covered, known is not None)
    release_freed_memory(slack=0)  # the later steps' buffers start from live memory only
    clock.peak_mb["attributions"] = clock.peak_mb.pop("engine")
    behaviour = behaviour_step(model, data, pred, known, done, clock)
    suspects: list[Suspect] = []
    if find and n and find_with in explainers:
        found = done[find_with]
        maps = np.concatenate(found.full) if keep_full else found.small
        suspects = clock.run("discovery", check_suspects, model, data, maps, pred.preds, steps.seed)
    sanity: dict[str, SanityResult] = {}
    if steps.sanity and n:
        runs = sanity_runs(_without(methods, set_aside), steps, budget_s is not None, n)
        sanity = clock.run("sanity", sanity_checks, model, data, runs, steps.sanity_images,
                           steps.seed)  # fmt: skip
    ablation = ablation_step(model, data, pred, clock) if steps.ablation else {}
    covered = dict(plan.covered)
    if n and any(m in explainers for m in plan.deferred):
        covered.update(deferred_step(plan, explainers, budget_s - (time.perf_counter() - started),
                                     pred, steps.seed, run_engine, done, clock))  # fmt: skip
    return _result(name, accuracy, data, gallery, thresholds, pred, done, explainers, params,
                   set_aside, covered, behaviour, suspects, sanity, ablation, clock,
                   steps.seed)  # fmt: skip


def _warn_amp_on_cpu(model: nn.Module, name: str, methods: dict, asked: bool) -> None:
    if asked and model_device(model).type == "cpu" and set(methods) & set(amp_methods()):
        print(f"{name}: {AMP_CPU_WARNING}", file=sys.stderr)


def _make_explainers(
    model: nn.Module, methods: dict[str, dict[str, Any]]
) -> tuple[dict[str, Explainer], dict[str, dict[str, Any]], dict[str, str]]:
    """(explainers, their parameter records, methods set aside → why) in ``methods`` order."""
    explainers, params, set_aside = {}, {}, {}
    for method, kwargs in methods.items():
        try:
            explainers[method] = make_explainer(method, model, **kwargs)
        except NotApplicable as e:
            set_aside[method] = str(e)
            continue
        params[method] = explainers[method].describe()
    return explainers, params, set_aside


def _known_colours(data: Dataset, colours: dict | None) -> dict | None:
    """Class → tell colour for the swap test where tells are known (None: no known tells)."""
    if not any(s.has_tell for s in data):
        return None
    return colours if colours is not None else tell_colours(data.samples)


def _engine_runner(options: EngineOptions, job: Job, model: nn.Module, methods: dict,
                   explainers: dict, data: Dataset, cache: AttributionCache | None):  # fmt: skip
    """``run(methods, covered, behaviour)``: those methods (each on its covered sample, else
    every image), plus the known-tell predictions if asked, on the engine."""
    n = len(data)
    small_shape = _compact_shape(data) if n else (1, 1)

    def run(names: list[str], covered: dict[str, np.ndarray], behaviour: bool = False):
        orders = {m: covered.get(m, np.arange(n)) for m in names}
        if behaviour:  # the removal / swap predictions, per sample, on the engine too
            orders[BEHAVIOUR] = np.arange(n)
        chosen = {m: methods[m] for m in names}  # a cluster's workers rebuild the explainers
        return explain(options, job, model, chosen, explainers, orders, data.samples, cache,
                       small_shape)  # fmt: skip

    return run


def behaviour_step(
    model: nn.Module,
    data: Dataset,
    pred: Predictions,
    known: dict | None,
    done: dict[str, MethodResult],
    clock: _Clock,
) -> dict[str, dict[str, float]]:
    """Tell removal and swap where tells are known, from the engine's per-sample predictions."""
    clock.seconds["behaviour"] = 0.0
    if known is None:
        return {}
    got = done.get(BEHAVIOUR, MethodResult())
    out = known_tell_tests(model, data.samples, pred.preds, known, got.rows)
    clock.seconds["behaviour"] = got.seconds
    clock.peak_mb["behaviour"] = peak_rss_mb()
    return out


def ablation_step(model: nn.Module, data: Dataset, pred: Predictions, clock: _Clock) -> dict:
    """Region ablation (the object removed, the background kept), its scalar results."""
    if not any(s.region.any() for s in data):
        return {}
    abl = clock.run("ablation", region_ablation, model, data, predictions=pred.preds)
    return {k: v for k, v in abl.items() if np.isscalar(v)}


def deferred_step(
    plan: AuditPlan,
    explainers: dict,
    left_s: float,
    pred: Predictions,
    seed: int,
    run_engine,
    done: dict[str, MethodResult],
    clock: _Clock,
) -> dict[str, np.ndarray]:
    """The costly methods a budget deferred, sized on the time left; their samples."""
    assert plan.plan is not None and left_s is not None  # deferred only under a budget
    later = [m for m in explainers if m in plan.deferred]
    covered, lines = size_deferred(plan.plan, later, left_s, clock.seconds["predict"],
                                   pred.labels, seed)  # fmt: skip
    clock.say(lines)
    engine_s = clock.seconds["engine"]
    done.update(clock.run("engine", run_engine, later, covered))
    clock.seconds["engine"] += engine_s
    clock.peak_mb["sampled methods"] = clock.peak_mb.pop("engine")
    release_freed_memory(slack=0)
    return covered


def _result(
    name,
    accuracy,
    data,
    gallery,
    thresholds,
    pred,
    done,
    explainers,
    params,
    set_aside,
    covered,
    behaviour,
    suspects,
    sanity,
    ablation,
    clock,
    seed,
) -> ModelAudit:
    """The methods' rows and maps gathered, the conditions judged: the ``ModelAudit``."""
    n, rows, compact_maps, gallery_maps = len(data), [], {}, {}
    gallery = list(gallery)
    shape = data[gallery[0]].shape[:2] if gallery else None
    for method in explainers:
        res = done.get(method, MethodResult())
        rows += res.rows
        clock.seconds[method] = res.seconds
        empty = np.full((n, *_compact_shape(data)), np.nan, np.float16) if n else None
        small = res.small if res.small is not None else empty
        compact_maps[method] = small if small is not None else np.zeros((0, 1, 1), np.float16)
        gallery_maps[method] = gallery_stack(res.kept, gallery, shape)
    per_sample = per_sample_table(rows)
    conditions, judged = judge(
        behaviour, summarise(per_sample), _tell_area(data), thresholds,
        untrusted={m for m, r in sanity.items() if not r.passed},
        n_classes=len(data.class_names), suspects=suspects, ablation=ablation,
        set_aside=set_aside,
    )  # fmt: skip
    suspects = [replace(s, judged=i == judged) for i, s in enumerate(suspects)]
    return ModelAudit(
        name=name, accuracy=accuracy, eval_accuracy=pred.accuracy(), per_sample=per_sample,
        behaviour=behaviour, conditions=conditions, verdict=verdict(conditions),
        method_params=params, gallery_maps=gallery_maps, seconds=clock.seconds,
        peak_mb=clock.peak_mb, suspects=suspects, sanity=sanity, ablation=ablation,
        compact_maps=compact_maps, set_aside=set_aside, covered=covered, plan=clock.lines,
        seed=seed,
    )  # fmt: skip


def _tell_area(data: Dataset) -> float:
    tells = [s.tell for s in data if s.tell is not None and s.tell.any()]
    return float(np.mean([t.mean() for t in tells])) if tells else float("nan")


def _without(methods: dict[str, dict[str, Any]], set_aside: dict[str, str]) -> dict:
    return {m: kw for m, kw in methods.items() if m not in set_aside}


def _with_options(method: str, kwargs: dict[str, Any], amp: bool, layer: str | None) -> dict:
    """Method parameters plus the audit-wide ``amp`` / ``layer`` where the method takes them
    (only when set, so default parameter records and cache keys stay as they were)."""
    out = dict(kwargs)
    if amp and method in amp_methods():
        out.setdefault("amp", True)
    if layer and method in layer_methods():
        out.setdefault("layer", layer)
    return out


def _compact_shape(data: Dataset) -> tuple[int, int]:
    return compact_shape(data[0].shape[:2])
