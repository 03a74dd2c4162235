"""Explain, score and judge one model on one evaluation set. Returns values; renders nothing.

The evaluation images are explained batch by batch; only per-sample scores and the few maps the
report's gallery shows are kept.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from leakaudit.auditing.budget import COSTLY, Plan, make_plan, stratified_sample
from leakaudit.auditing.verdict import Condition, Thresholds, build_conditions, verdict
from leakaudit.data.samples import Dataset
from leakaudit.data.spill import SpilledStack
from leakaudit.engines import BEHAVIOUR, EngineOptions, Job, MethodResult, explain
from leakaudit.errors import ModelOutputError
from leakaudit.evidence import metrics
from leakaudit.evidence.ablation import ablate_region, region_ablation
from leakaudit.evidence.behaviour import removal_test, swap_test, tell_colours
from leakaudit.evidence.discovery_view import DISCOVERY_SIDE, area_resize, reduced_shape
from leakaudit.evidence.sanity import SanityResult, sanity_checks, sanity_estimate
from leakaudit.evidence.stats import bootstrap_ci
from leakaudit.evidence.suspects import Suspect, check_suspects
from leakaudit.explain import make_explainer
from leakaudit.explain.base import NotApplicable
from leakaudit.explain.cache import AttributionCache, model_fingerprint
from leakaudit.explain.stream import peak_rss_mb
from leakaudit.models.train import (
    FirstOutput,
    as_logits,
    non_finite_error,
    probabilities,
    to_tensor,
)
from leakaudit.runtime import (
    AMP_CPU_WARNING,
    images_per_batch,
    model_device,
    release_freed_memory,
    resolve_device,
)

# moved to their own modules; importable from here as before
__all__ = ["AuditResult", "Checks", "ModelAudit", "Suspect", "audit_model", "score_rows"]
from leakaudit.auditing.audit_result import AuditResult


def score_columns() -> list[str]:
    """The per-sample score columns: every audited metric of the registry (``metrics.py``)."""
    return [m.name for m in metrics.audited()]


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


COMPACT_SIDE = DISCOVERY_SIDE  # one grid: discovery above 64 px works on the compact maps


def compact(maps: np.ndarray, side: int = COMPACT_SIDE) -> np.ndarray:
    """(N, H, W) → (N, h, w) float16 with max(h, w) ≤ ``side`` (area average), each map
    divided by its largest |value| (all-zero maps stay zero)."""
    maps = np.asarray(maps, dtype=np.float32)
    n, h, w = maps.shape
    maps = area_resize(maps, reduced_shape((h, w), side))
    peak = np.abs(maps).reshape(n, -1).max(axis=1) if n else np.zeros(0, np.float32)
    peak = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return (maps / peak[:, None, None]).astype(np.float16)


def sample_intervals(
    per_sample: pd.DataFrame, method: str, n_sampled: int, seed: int
) -> dict[str, Any]:
    """A sampled method's bootstrap 95 % CIs: ``<score>_ci95`` = [lo, hi] per mean."""
    g = per_sample[per_sample["method"] == method]
    out: dict[str, Any] = {"sampled": True, "n_sampled": int(n_sampled)}
    for m in metrics.audited():
        iv = bootstrap_ci(g[m.name].to_numpy(dtype=float), seed=seed)
        out[f"{m.key}_ci95"] = [iv.lo, iv.hi]
    return out


def summarise(per_sample: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per method: mean of each audited metric over the images where it is defined (NaN-aware),
    under its summary key; ``n_with_region`` / ``n_with_tell`` count the images where the first
    metric that needs that mask is defined."""
    out = {}
    audited = [m for m in metrics.audited() if m.name in per_sample]
    first = {}
    for m in audited:
        first.setdefault(m.needs, m.name)
    for method, g in per_sample.groupby("method", sort=False):
        means: dict[str, float] = {m.key: _nanmean(g[m.name]) for m in audited}
        means["n"] = len(g)
        for needs, col in first.items():
            means[f"n_with_{needs}"] = int(g[col].notna().sum())
        out[str(method)] = means
    return out


def per_class_table(per_sample: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Mean scores per (method, class) plus an 'all' row per method."""
    df = per_sample.copy()
    df["class"] = [class_names[i] for i in df["label"]]
    cols = [c for c in score_columns() if c in df]
    by_class = df.groupby(["method", "class"], sort=False)[cols].mean().reset_index()
    overall = df.groupby("method", sort=False)[cols].mean().reset_index()
    overall["class"] = "all"
    counts = df.groupby(["method", "class"], sort=False).size().rename("n").reset_index()
    by_class = by_class.merge(counts, on=["method", "class"])
    overall["n"] = df.groupby("method", sort=False).size().values
    return pd.concat([by_class, overall], ignore_index=True)


def score_rows(
    method: str,
    batch: Sequence[Any],
    maps: np.ndarray,
    preds: np.ndarray,
    confidence: np.ndarray,
    p_true: np.ndarray,
) -> list[dict[str, Any]]:
    """One per-sample row per image: the only place a map becomes numbers, so any engine that
    computes the maps (in this process or on a cluster's workers) scores them the same way."""
    rows = []
    for j, s in enumerate(batch):
        m = maps[j]
        rows.append({
            "id": s.id, "label": int(s.label), "pred": int(preds[j]), "method": method,
            **metrics.score_image(m, s.region, s.tell),
            "confidence": float(confidence[j]), "p_true": float(p_true[j]),
        })  # fmt: skip
    return rows


def _nanmean(x) -> float:
    arr = np.asarray(x, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


@dataclass(frozen=True)
class Checks:
    """Which evidence beyond the attribution scores an audit gathers (all on by default)."""

    behaviour: bool = True  # tell removal / swap where tells are known
    discovery: bool = True  # suspected tells without annotations, then tested by behaviour
    sanity: bool = True  # model-parameter randomisation per method
    ablation: bool = True  # remove the object, keep the background
    discovery_method: str = "saliency"
    sanity_images: int = 12
    # costly methods (LIME, occlusion, IG, SmoothGrad) are checked on at most this many of the
    # sanity images when a time budget is set (None: all ``sanity_images``)
    sanity_images_costly: int = 4
    seed: int = 0


def prepare_model(model: nn.Module, probe: np.ndarray, device: torch.device | None) -> nn.Module:
    """The model in eval mode on ``device`` (None: where it is), returning logits only.

    One probe forward pass finds models that return a tuple (→ element 0 if it holds float
    logits) and models whose output cannot be class scores (→ ``ModelOutputError``)."""
    if device is not None:
        model = model.to(device)
    model = model.eval()
    with torch.inference_mode():
        out = model(to_tensor(probe, model_device(model)))
    as_logits(out)  # raises on int / non-tensor outputs
    return FirstOutput(model).eval() if isinstance(out, (tuple, list)) else model


def _stack(samples: Sequence[Any]) -> np.ndarray:
    return np.stack([s.image for s in samples]).astype(np.float32, copy=False)


def predict_all(model: nn.Module, data: Dataset, batch_size: int = 256) -> np.ndarray:
    """(N, C) softmax probabilities, the images stacked one batch at a time: the audit's one
    prediction pass, reused by accuracy, behaviour, ablation and the suspect checks."""
    out, bad = [], 0
    if len(data):
        batch_size = images_per_batch(batch_size, data[0].shape[:2])
    for s in range(0, len(data), batch_size):
        probs, n_bad = probabilities(model, _stack(data.samples[s : s + batch_size]), batch_size)
        out.append(probs)
        bad += n_bad
    if bad:
        raise non_finite_error(bad, len(data))
    return np.concatenate(out) if out else np.zeros((0, len(data.class_names)), np.float32)


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
    checks: Checks | None = None,
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
    checks = checks or Checks()
    started = time.perf_counter()  # a budget bounds the whole audit, predictions included
    timings: dict[str, float] = {}
    labels = data.labels()
    n = len(data)
    rows: list[dict[str, Any]] = []
    gallery = list(gallery)
    gallery_maps: dict[str, np.ndarray] = {}
    compact_maps: dict[str, np.ndarray | SpilledStack] = {}
    params: dict[str, dict[str, Any]] = {}
    set_aside: dict[str, str] = {}
    covered: dict[str, np.ndarray] = {}
    plan_lines: list[str] = []
    discovery_maps: list[np.ndarray] = []
    find_with = checks.discovery_method if checks.discovery_method in methods else None
    t0 = time.perf_counter()
    probs = np.zeros((0, len(data.class_names)), np.float32)
    if n:
        try:
            model = prepare_model(model, data[0].image[None], _device(device))
            probs = predict_all(model, data)
        except ModelOutputError as e:
            raise ModelOutputError(f"model {name!r}: {e}") from e
    preds = probs.argmax(1) if n else np.array([], dtype=np.int64)
    confidence = probs.max(1) if n else np.array([])
    p_true = probs[np.arange(n), labels] if n else np.array([])
    timings["predict"] = time.perf_counter() - t0
    peak_mb = {"predict": peak_rss_mb()}
    model_hash = model_fingerprint(model) if cache is not None and cache.enabled else ""
    methods = {m: _with_options(m, kw, amp, layer) for m, kw in methods.items()}
    if (
        progress
        and n
        and amp
        and model_device(model).type == "cpu"
        and set(methods) & set(AMP_METHODS)
    ):
        print(f"{name}: {AMP_CPU_WARNING}", file=sys.stderr)
    if n:  # bounded memory at large image sizes; unchanged at ≤ 64 px
        batch_size = images_per_batch(batch_size, data[0].shape[:2])
    find = checks.discovery and find_with is not None
    # under a budget the costly methods run last, on the time the other steps really left
    # (discovery's own method, if costly, runs first: discovery needs its maps)
    deferred = (
        [m for m in methods if m in COSTLY and not (find and m == find_with)]
        if budget_s is not None
        else []
    )
    plan: Plan | None = None
    if n and (progress or budget_s is not None):
        reserve = _other_steps(model, data, methods, checks, budget_s is not None)
        plan = make_plan(model, _stack(data.samples[:batch_size]), methods, n, budget_s, reserve)
        for m, mp in plan.methods.items():
            mp.deferred = m in deferred
            if mp.n_planned < n:
                sample = stratified_sample(labels, mp.n_planned, checks.seed)
                mp.n_planned = len(sample)  # the per-class minimum may add a few
                if not mp.deferred:
                    covered[m] = sample
        plan_lines = plan.lines()
        if checks.sanity:
            plan_lines.append(
                sanity_estimate(model, plan, methods, checks, budget_s is not None, n)[1]
            )
        if progress:
            for line in plan_lines:
                print(f"{name}: {line}", file=sys.stderr)
    explainers = {}
    for method, kwargs in methods.items():
        try:
            explainers[method] = make_explainer(method, model, **kwargs)
        except NotApplicable as e:
            set_aside[method] = str(e)
            continue
        params[method] = explainers[method].describe()
    find = find and find_with not in covered
    # discovery works on ≤ 64 px (discovery_view): above that, on the compact maps
    small = n and max(data[0].shape[:2]) <= DISCOVERY_SIDE
    keep_full = find_with if find and small else None
    tested = checks.behaviour and any(s.has_tell for s in data)  # known tells
    known = (colours if colours is not None else tell_colours(data.samples)) if tested else {}
    job = Job(name, model_hash, labels, preds, confidence, p_true, frozenset(gallery), batch_size,
              keep_full, progress, known)  # fmt: skip
    runnable = {m: kw for m, kw in methods.items() if m in explainers}
    first = {m: kw for m, kw in runnable.items() if m not in deferred}
    orders = {m: covered.get(m, np.arange(n)) for m in first}
    if tested:  # the removal / swap predictions, per sample, on the engine too
        orders[BEHAVIOUR] = np.arange(n)
    small_shape = _compact_shape(data) if n else (1, 1)
    t0 = time.perf_counter()
    done = explain(engine or EngineOptions(), job, model, first, explainers, orders,
                   data.samples, cache, small_shape)  # fmt: skip
    timings["engine"] = time.perf_counter() - t0
    peak_mb["attributions"] = peak_rss_mb()
    release_freed_memory(slack=0)  # the later steps' buffers start from live memory only
    if keep_full:
        discovery_maps = done.get(keep_full, MethodResult()).full
    behaviour: dict[str, dict[str, float]] = {}
    timings["behaviour"] = 0.0
    if tested:
        got = done.get(BEHAVIOUR, MethodResult())
        removed = np.array([r["removed"] for r in got.rows], dtype=np.int64)
        painted = [r["painted"] for r in got.rows]
        behaviour["removal"] = removal_test(model, data.samples, predictions=preds, removed=removed)
        behaviour["swap"] = swap_test(model, data.samples, known, painted=painted)
        timings["behaviour"] = got.seconds
        peak_mb["behaviour"] = peak_rss_mb()

    suspects: list[Suspect] = []
    if find and n and find_with in explainers:
        t0 = time.perf_counter()
        maps = np.concatenate(discovery_maps) if keep_full else done[find_with].small
        del discovery_maps
        suspects = check_suspects(model, data, maps, preds, checks.seed)
        timings["discovery"] = time.perf_counter() - t0
        peak_mb["discovery"] = peak_rss_mb()
    sanity: dict[str, SanityResult] = {}
    if checks.sanity and n:
        t0 = time.perf_counter()
        runnable = {m: kw for m, kw in methods.items() if m not in set_aside}
        sanity = sanity_checks(model, data, runnable, checks, budgeted=budget_s is not None)
        timings["sanity"] = time.perf_counter() - t0
        peak_mb["sanity"] = peak_rss_mb()
    ablation: dict[str, Any] = {}
    if checks.ablation and any(s.region.any() for s in data):
        t0 = time.perf_counter()
        abl = region_ablation(model, data, predictions=preds)
        ablation = {k: v for k, v in abl.items() if np.isscalar(v)}
        timings["ablation"] = time.perf_counter() - t0
        peak_mb["ablation"] = peak_rss_mb()
    if n and any(m in runnable for m in deferred):
        later = {m: kw for m, kw in runnable.items() if m in deferred}
        assert plan is not None and budget_s is not None  # deferred only under a budget
        left = budget_s - (time.perf_counter() - started)
        # the probe timed one batch for about a second; a prediction pass of several seconds
        # measures the machine's sustained speed better (31 vs 38 img/s at 224 px on a busy
        # machine, docs/scale.md): cost at the slower of the two
        sustained = timings["predict"] >= SUSTAINED_S
        slower = max(1.0, timings["predict"] / n / plan.forward_s) if sustained else 1.0
        for m in later:
            share = max(left, 0.0) / len(later)
            plan.methods[m].per_image_s *= slower
            cost = plan.methods[m].per_image_s
            k = min(n, int(share // cost)) if cost > 0 else n
            if k < n:
                covered[m] = stratified_sample(labels, k, checks.seed)
            plan.methods[m].n_planned = len(covered.get(m, labels))
            line = plan.methods[m].line_when_run(left)
            plan_lines.append(line)
            if progress:
                print(f"{name}: {line}", file=sys.stderr)
        t0 = time.perf_counter()
        orders = {m: covered.get(m, np.arange(n)) for m in later}
        done.update(explain(engine or EngineOptions(), job, model, later, explainers, orders,
                            data.samples, cache, small_shape))  # fmt: skip
        timings["engine"] += time.perf_counter() - t0
        peak_mb["sampled methods"] = peak_rss_mb()
        release_freed_memory(slack=0)
    for method in runnable:
        res = done.get(method, MethodResult())
        rows += res.rows
        timings[method] = res.seconds
        empty = np.full((n, *small_shape), np.nan, np.float16) if n else None
        small = res.small if res.small is not None else empty
        compact_maps[method] = small if small is not None else np.zeros((0, 1, 1), np.float16)
        gallery_maps[method] = _gallery_stack(res.kept, gallery, data)
    per_sample = pd.DataFrame(
        rows, columns=["id", "label", "pred", "method", *score_columns(), "confidence", "p_true"]
    )

    tells = [s.tell for s in data if s.tell is not None and s.tell.any()]
    tell_area = float(np.mean([t.mean() for t in tells])) if tells else float("nan")
    untrusted = {m for m, r in sanity.items() if not r.passed}
    conditions = build_conditions(
        behaviour, summarise(per_sample), tell_area, thresholds, untrusted=untrusted,
        n_classes=len(data.class_names), suspects=suspects, ablation=ablation,
        set_aside=set_aside,
    )  # fmt: skip
    eval_acc = float((preds == labels).mean()) if n else float("nan")
    return ModelAudit(
        name=name,
        accuracy=accuracy,
        eval_accuracy=eval_acc,
        per_sample=per_sample,
        behaviour=behaviour,
        conditions=conditions,
        verdict=verdict(conditions),
        method_params=params,
        gallery_maps=gallery_maps,
        seconds=timings,
        peak_mb=peak_mb,
        suspects=suspects,
        sanity=sanity,
        ablation=ablation,
        compact_maps=compact_maps,
        set_aside=set_aside,
        covered=covered,
        plan=plan_lines,
        seed=checks.seed,
    )


SUSTAINED_S = 5.0  # a prediction pass this long is a rate measurement (warm-up is noise in it)
SUSPECT_PASSES = 4  # forwards per image for testing the top suspects (removal + swap), measured
# at 2.2 on the 1 000-crop audit of docs/scale.md (3 classes, one strong suspect), before each
# held suspect's swap added a control paste per image (not re-measured: one more per image)


def _other_steps(
    model: nn.Module, data: Dataset, methods: dict[str, dict[str, Any]], checks: Checks,
    budgeted: bool,
) -> Callable[[Plan], tuple[float, str]]:  # fmt: skip
    """The plan's reserve: forwards of the tell tests (removal + a paste per other class), the
    suspect tests and region ablation, plus the sanity check, at the measured pass times."""
    n, k = len(data), len(data.class_names)
    passes, what, fill_s = 0, [], 0.0
    if checks.behaviour and (n_tell := sum(s.has_tell for s in data)):
        passes += n_tell * k
        what.append("tell tests")
    if checks.discovery and checks.discovery_method in methods:
        passes += SUSPECT_PASSES * n
        what.append("suspect tests")
    if checks.ablation and (n_region := sum(bool(s.region.any()) for s in data)):
        passes += n_region
        what.append("region ablation")
        fill_s = n_region * fill_seconds(data)

    def reserve(plan: Plan) -> tuple[float, str]:
        seconds = passes * plan.forward_s + fill_s
        desc = f"{', '.join(what)}: {passes} forward passes" if what else ""
        if fill_s:
            desc += f" + the ablation fill ({fill_s:.0f} s)"
        if checks.sanity:
            seconds += sanity_estimate(model, plan, methods, checks, budgeted, n)[0]
            desc = f"{desc} + the sanity check" if desc else "the sanity check"
        return seconds, desc

    return reserve


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


def _device(device: torch.device | str | None) -> torch.device | None:
    return None if device is None else resolve_device(str(device))


def _with_options(method: str, kwargs: dict[str, Any], amp: bool, layer: str | None) -> dict:
    """Method parameters plus the audit-wide ``amp`` / ``layer`` where the method takes them
    (only when set, so default parameter records and cache keys stay as they were)."""
    out = dict(kwargs)
    if amp and method in AMP_METHODS:
        out.setdefault("amp", True)
    if layer and method == "gradcam":
        out.setdefault("layer", layer)
    return out


AMP_METHODS = ("lime", "occlusion")


def _compact_shape(data: Dataset) -> tuple[int, int]:
    return reduced_shape(data[0].shape[:2], COMPACT_SIDE)


def _gallery_stack(kept: dict[int, np.ndarray], gallery: list[int], data: Dataset) -> np.ndarray:
    """(G, H, W) gallery maps; an image a budgeted method skipped shows as NaN (not explained)."""
    if not gallery:
        return np.zeros((0, 1, 1), np.float32)
    shape = data[gallery[0]].shape[:2]
    return np.stack([kept.get(i, np.full(shape, np.nan, np.float32)) for i in gallery])
