"""Attributions batch by batch, so memory stays flat however large the dataset.

``stream_attributions`` yields ``(indices, Attribution)`` per batch; callers score each batch
and drop its maps. Only the current batch's images are stacked (a ``Dataset`` is read sample by
sample), and with a cache the stored images are served without recomputation.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from leakaudit.data.samples import Dataset, Sample
from leakaudit.explain.base import Attribution, Explainer
from leakaudit.explain.cache import AttributionCache, cached_attribute, model_fingerprint

Item = Sample | tuple[np.ndarray, int]


def _batches(data: Dataset | Iterable[Item], batch_size: int) -> Iterator[tuple[list, list]]:
    images: list[np.ndarray] = []
    targets: list[int] = []
    for item in data:
        if isinstance(item, Sample):
            images.append(item.image)
            targets.append(item.label)
        else:
            images.append(item[0])
            targets.append(int(item[1]))
        if len(images) == batch_size:
            yield images, targets
            images, targets = [], []
    if images:
        yield images, targets


def stream_attributions(
    explainer: Explainer,
    data: Dataset | Iterable[Item],
    batch_size: int = 64,
    cache: AttributionCache | None = None,
    progress: bool = True,
    model_hash: str | None = None,
) -> Iterator[tuple[np.ndarray, Attribution]]:
    """Yield (dataset indices of the batch, its Attribution); targets are the samples' labels
    (or the ints of ``(image, target)`` pairs — pass predicted classes that way)."""
    if cache is not None and cache.enabled and model_hash is None:
        model_hash = model_fingerprint(explainer.model)
    total = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    bar = tqdm(total=total, desc=explainer.name, unit="img", disable=not progress, leave=False)
    start = 0
    try:
        for images, targets in _batches(data, batch_size):
            x = np.stack(images).astype(np.float32, copy=False)
            t = np.asarray(targets, dtype=np.int64)
            att = cached_attribute(explainer, model_hash or "", x, t, cache, batch_size)
            idx = np.arange(start, start + len(x))
            start += len(x)
            bar.update(len(x))
            yield idx, att
    finally:
        bar.close()


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    Linux: ``VmHWM`` from /proc/self/status, because ``ru_maxrss`` survives fork+exec — a child
    started by a 1.4 GB parent reports at least 1.4 GB. Elsewhere ``getrusage`` (KiB on Linux,
    bytes on macOS).
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
