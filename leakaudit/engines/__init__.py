"""Engines compute the per-sample evidence (attributions, scores, behaviour predictions); the
audit does everything else on the driver. ``local`` is this process; ``ray`` spreads the same
batches over a pool of Ray actors (the optional extra ``leakaudit[ray]``). Both run
``work.explain_batch`` on batches cut by ``work.plan_tasks``, so their numbers are equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from torch import nn

from leakaudit.engines import local, ray_engine
from leakaudit.engines.work import (
    BEHAVIOUR,
    BatchResult,
    EngineOptions,
    Job,
    MethodResult,
    assemble,
    plan_tasks,
)
from leakaudit.errors import ConfigError
from leakaudit.explain.base import Explainer
from leakaudit.explain.cache import AttributionCache

# name -> run(job, model, methods, explainers, orders, samples, cache, options) -> batch results
ENGINES: dict[str, Callable[..., Iterable[BatchResult]]] = {
    "local": local.run,
    "ray": ray_engine.run,
}

__all__ = [
    "BEHAVIOUR",
    "ENGINES",
    "EngineOptions",
    "Job",
    "MethodResult",
    "check_engine",
    "explain",
]


def check_engine(name: str) -> None:
    """ConfigError for an unknown engine name (before any data is read)."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; choose from {sorted(ENGINES)}")


def explain(
    options: EngineOptions,
    job: Job,
    model: nn.Module,
    methods: dict[str, dict[str, Any]],
    explainers: dict[str, Explainer],
    orders: dict[str, np.ndarray],
    samples: Sequence[Any],
    cache: AttributionCache | None,
    small_shape: tuple[int, int],
) -> dict[str, MethodResult]:
    """Every method over its ``orders`` (positions into ``samples``) on the chosen engine."""
    check_engine(options.name)
    results = ENGINES[options.name](job, model, methods, explainers, orders, samples, cache,
                                    options)  # fmt: skip
    spill = bool(len(samples)) and getattr(samples[0], "spilled", False)  # images spilled: maps too
    tasks = plan_tasks(orders, job.batch_size)
    return assemble(results, tasks, len(samples), small_shape, spill=spill)
