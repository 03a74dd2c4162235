"""The default engine: the batches in this process, one progress bar per method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from leakaudit.engines.work import BatchResult, EngineOptions, Job, explain_batch, plan_tasks
from leakaudit.explain.base import Explainer
from leakaudit.explain.cache import AttributionCache


def run(
    job: Job,
    model: nn.Module,
    methods: dict[str, dict[str, Any]],
    explainers: dict[str, Explainer],
    orders: dict[str, np.ndarray],
    samples: Sequence[Any],
    cache: AttributionCache | None,
    options: EngineOptions,
) -> list[BatchResult]:
    """Streaming: only one batch of images is stacked at a time; results stay small."""
    out: list[BatchResult] = []
    tasks = plan_tasks(orders, job.batch_size)
    for method, order in orders.items():
        bar = tqdm(total=len(order), desc=f"{job.name}: {method}", unit="img",
                   disable=not job.progress)  # fmt: skip
        for task in (t for t in tasks if t.method == method):
            batch = [samples[i] for i in task.idx]
            out.append(explain_batch(task, batch, explainers.get(method), job, cache, model))
            bar.update(len(batch))
        bar.close()
    return out
