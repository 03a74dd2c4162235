"""The unit of work every engine runs: explain one batch with one method and score it.

Engines differ only in *where* ``explain_batch`` runs (this process, or actors on a Ray
cluster); the batches themselves (which images, in which order) are cut the same way by
``plan_tasks``, and every random choice inside a method derives from the image (LIME's and
SmoothGrad's per-image seeds), so the per-sample numbers do not depend on the engine or on
the number of workers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leakaudit.data.spill import SpilledStack
from leakaudit.evidence import metrics
from leakaudit.evidence.behaviour import behaviour_predictions
from leakaudit.evidence.discovery_view import DISCOVERY_SIDE, area_resize, reduced_shape
from leakaudit.explain.base import Explainer
from leakaudit.explain.cache import AttributionCache, cached_attribute
from leakaudit.runtime import release_freed_memory

COMPACT_SIDE = DISCOVERY_SIDE  # one grid: discovery above 64 px works on the compact maps


def stack_images(samples: Sequence[Any]) -> np.ndarray:
    """(N, H, W, 3) float32: the samples' images, as every forward pass takes them."""
    return np.stack([s.image for s in samples]).astype(np.float32, copy=False)


def compact(maps: np.ndarray, side: int = COMPACT_SIDE) -> np.ndarray:
    """(N, H, W) → (N, h, w) float16 with max(h, w) ≤ ``side`` (area average), each map
    divided by its largest |value| (all-zero maps stay zero)."""
    maps = np.asarray(maps, dtype=np.float32)
    n, h, w = maps.shape
    maps = area_resize(maps, reduced_shape((h, w), side))
    peak = np.abs(maps).reshape(n, -1).max(axis=1) if n else np.zeros(0, np.float32)
    peak = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return (maps / peak[:, None, None]).astype(np.float16)


def compact_shape(image_shape: Sequence[int]) -> tuple[int, int]:
    """The (h, w) of an image's compact map."""
    return reduced_shape((int(image_shape[0]), int(image_shape[1])), COMPACT_SIDE)


def score_rows(
    method: str,
    batch: Sequence[Any],
    maps: np.ndarray,
    preds: np.ndarray,
    confidence: np.ndarray,
    p_true: np.ndarray,
    ranks: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One per-sample row per image: the only place a map becomes numbers, so any engine that
    computes the maps (in this process or on a cluster's workers) scores them the same way.
    ``ranks``: which pixels are "top" where the map does not say it (LIME: superpixel weight,
    ``Attribution.rank_keys``)."""
    rows = []
    for j, s in enumerate(batch):
        m = maps[j]
        rank = None if ranks is None else ranks[j]
        rows.append({
            "id": s.id, "label": int(s.label), "pred": int(preds[j]), "method": method,
            **metrics.score_image(m, s.region, s.tell, rank),
            "confidence": float(confidence[j]), "p_true": float(p_true[j]),
        })  # fmt: skip
    return rows


@dataclass(frozen=True)
class EngineOptions:
    """Which engine computes the per-sample evidence, and where (``ray`` only: cluster)."""

    name: str = "local"  # a key of ``engines.ENGINES``
    address: str | None = None  # ray: an existing cluster ("auto", "ray://host:10001"), else local
    workers: int | None = None  # ray: actors in the pool (None: one per CPU, or per GPU)
    # test hook: the first batch any worker takes makes that worker process exit (once, the
    # marker file records it), so tests can prove Ray's retries lose and duplicate nothing
    fail_once: str | None = None


BEHAVIOUR = "behaviour"  # the task kind of the known-tell removal / swap predictions


@dataclass
class Job:
    """What every batch of one audit shares: the scores' inputs from the prediction pass."""

    name: str
    model_hash: str
    labels: np.ndarray
    preds: np.ndarray
    confidence: np.ndarray
    p_true: np.ndarray
    gallery: frozenset[int]
    batch_size: int
    keep_full: str | None = None  # the method whose full maps discovery needs (None: none)
    progress: bool = True
    colours: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # swap test


@dataclass(frozen=True)
class Task:
    """One batch of one method: positions into the dataset, in the order the engine scores."""

    number: int  # tasks are reassembled in this order, whatever order they finish in
    method: str
    idx: np.ndarray


@dataclass
class BatchResult:
    """What one batch sends back: its rows, small maps, gallery maps and (maybe) full maps."""

    task: int
    method: str
    idx: np.ndarray
    rows: list[dict[str, Any]]
    small: np.ndarray | None  # None for behaviour batches (no maps)
    kept: dict[int, np.ndarray]
    full: np.ndarray | None
    seconds: float
    cache_counts: tuple[int, int, int] = (0, 0, 0)  # hits, misses, corrupt
    cpu_seconds: float = 0.0  # CPU time of the process that ran it (all its threads)


@dataclass
class MethodResult:
    """One method over the whole dataset, assembled from its batches in task order."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    small: np.ndarray | SpilledStack | None = None  # (N, h, w) compact maps
    kept: dict[int, np.ndarray] = field(default_factory=dict)
    full: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0  # summed over batches: wall time of the process that ran each
    cpu_seconds: float = 0.0  # core-seconds: what sizes a cluster (docs/scale.md)


def plan_tasks(orders: dict[str, np.ndarray], batch_size: int) -> list[Task]:
    """Method by method, consecutive ``batch_size`` slices of its order (as the loop always was)."""
    tasks: list[Task] = []
    for method, order in orders.items():
        for start in range(0, len(order), batch_size):
            tasks.append(Task(len(tasks), method, np.asarray(order[start : start + batch_size])))
    return tasks


def explain_batch(
    task: Task,
    samples: Sequence[Any],
    explainer: Explainer | None,
    job: Job,
    cache: AttributionCache | None,
    model: Any = None,
) -> BatchResult:
    """Attribute, compact and score one batch: the same code on the driver and on a worker.
    A ``BEHAVIOUR`` batch instead predicts its samples with the tell covered and painted over
    (``behaviour.behaviour_predictions``; ``model`` is needed only for it)."""
    release_freed_memory()  # the previous batch's buffers are free now (runtime.py says why)
    t0, c0 = time.perf_counter(), time.process_time()
    idx = task.idx
    if task.method == BEHAVIOUR:
        rows = behaviour_predictions(model, samples, job.colours)
        took = time.perf_counter() - t0
        return BatchResult(task.number, task.method, idx, rows, None, {}, None, took,
                           cpu_seconds=time.process_time() - c0)  # fmt: skip
    assert explainer is not None
    before = _counts(cache)
    images = stack_images(samples)
    attr = cached_attribute(explainer, job.model_hash, images, job.labels[idx], cache)
    rows = score_rows(task.method, samples, attr.maps, job.preds[idx], job.confidence[idx],
                      job.p_true[idx], attr.rank_keys())  # fmt: skip
    kept = {int(i): attr.maps[j] for j, i in enumerate(idx) if int(i) in job.gallery}
    full = attr.maps if task.method == job.keep_full else None
    after = _counts(cache)
    return BatchResult(
        task.number, task.method, idx, rows, compact(attr.maps), kept, full,
        time.perf_counter() - t0, tuple(a - b for a, b in zip(after, before, strict=True)),
        time.process_time() - c0,
    )  # fmt: skip


def _counts(cache: AttributionCache | None) -> tuple[int, int, int]:
    return (cache.hits, cache.misses, cache.corrupt) if cache is not None else (0, 0, 0)


def assemble(
    results: Iterable[BatchResult],
    tasks: Sequence[Task],
    n: int,
    small_shape: tuple[int, int],
    spill: bool = False,
) -> dict[str, MethodResult]:
    """Batch results → per-method results in task order. Every task must come back exactly
    once: a lost batch or one counted twice (a retried worker) is an error, not a number.

    ``results`` may be a stream: each batch's compact maps go into the method's (N, h, w) stack
    as it arrives, so they are never held twice; with ``spill`` that stack lives in a spill file
    (``SpilledStack``), as the images do, and the audit's memory does not grow with them."""
    smalls: dict[str, np.ndarray | SpilledStack] = {}
    by_task: dict[int, BatchResult] = {}
    numbers: list[int] = []
    for r in results:
        numbers.append(r.task)
        if r.small is not None:
            if r.method not in smalls:
                shape = (n, *small_shape)
                smalls[r.method] = (
                    SpilledStack(shape, np.float16) if spill else np.full(shape, np.nan, np.float16)
                )
            smalls[r.method][r.idx] = r.small
            r.small = None
        by_task[r.task] = r
    numbers.sort()
    if numbers != list(range(len(tasks))):
        lost = sorted(set(range(len(tasks))) - set(numbers))
        twice = sorted({k for k in numbers if numbers.count(k) > 1})
        raise RuntimeError(f"engine returned batches wrongly: lost {lost}, twice {twice}")
    out: dict[str, MethodResult] = {}
    for r in (by_task[k] for k in numbers):
        m = out.setdefault(r.method, MethodResult(small=smalls.get(r.method)))
        m.rows += r.rows
        m.kept.update(r.kept)
        if r.full is not None:
            m.full.append(r.full)
        m.seconds += r.seconds
        m.cpu_seconds += r.cpu_seconds
    return out
