"""The default engine: the batches in this process, one progress bar per method."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
) -> Iterator[BatchResult]:
    """Streaming: one batch of images at a time, each batch's results handed on as it is done."""
    tasks = plan_tasks(orders, job.batch_size)
    for method, order in orders.items():
        bar = tqdm(total=len(order), desc=f"{job.name}: {method}", unit="img",
                   disable=not job.progress)  # fmt: skip
        for task in (t for t in tasks if t.method == method):
            batch = [samples[i] for i in task.idx]
            yield explain_batch(task, batch, explainers.get(method), job, cache, model)
            bar.update(len(batch))
        bar.close()
