"""The Python API: audit a model that is already in memory, on data that is already in memory.

The command line reads files; notebooks and training scripts hold an ``nn.Module`` and a torch
``Dataset``/``DataLoader`` or numpy arrays. These functions accept those directly and run exactly
the audit the CLI runs (``pipeline.audit_one``), so numbers agree between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.pipeline import AuditOptions, audit_one, compare_audits, gallery_indices
from leakaudit.data.samples import Dataset, Sample
from leakaudit.errors import ConfigError, DatasetError
from leakaudit.models.load import ModelSpec
from leakaudit.runtime import configure

ArrayData = tuple[np.ndarray, np.ndarray]


def as_dataset(
    data: Dataset | ArrayData | Iterable[Any],
    class_names: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    tells: np.ndarray | None = None,
) -> Dataset:
    """Our ``Dataset`` from (images, labels) arrays, a torch ``Dataset``/``DataLoader`` yielding
    (image, label), or a ``Dataset`` as it is. Images: NHWC or NCHW, float in [0, 1] or uint8,
    *before* normalisation (give mean/std to ``audit`` instead). ``masks`` are the object regions
    (N×H×W bool), ``tells`` known tell masks; both optional."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        images, labels = np.asarray(data[0]), np.asarray(data[1])
    else:
        images, labels = _collect(data)
    images = _to_nhwc_unit(images)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(images) != len(labels):
        raise DatasetError(f"{len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise DatasetError("the dataset is empty")
    n_classes = int(labels.max()) + 1
    names = list(class_names) if class_names is not None else [str(k) for k in range(n_classes)]
    if labels.min() < 0 or n_classes > len(names):
        raise DatasetError(f"labels must lie in 0..{len(names) - 1}, got {labels.min()}..")
    h, w = images.shape[1:3]
    regions = _masks(masks, len(images), h, w, "masks")
    known = _masks(tells, len(images), h, w, "tells") if tells is not None else None
    samples = [
        Sample(
            images[i],
            int(labels[i]),
            regions[i],
            f"sample_{i:06d}",
            None if known is None or not known[i].any() else known[i],
        )
        for i in range(len(images))
    ]
    return Dataset(samples, names)


def _collect(data: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Stack (image, label) items or batches from a torch Dataset or DataLoader."""
    images, labels = [], []
    for item in data:
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DatasetError("each item must be (image, label)")
        x, y = item[0], item[1]
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        y = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
        if x.ndim == 4:  # a batch from a DataLoader
            images += list(x)
            labels += list(np.atleast_1d(y))
        else:
            images.append(x)
            labels.append(int(y))
    if not images:
        raise DatasetError("the dataset is empty")
    return np.stack(images), np.asarray(labels)


def _to_nhwc_unit(images: np.ndarray) -> np.ndarray:
    if images.ndim == 3:  # grayscale N×H×W
        images = images[..., None]
    if images.ndim != 4:
        raise DatasetError(f"images must be N×H×W×C or N×C×H×W, got shape {images.shape}")
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.shape[-1] != 3:
        raise DatasetError(f"images need 1 or 3 channels, got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise DatasetError(
            "float images must be finite and in [0, 1] (un-normalised); pass the model's "
            "normalisation as mean=/std= instead"
        )
    return images


def _masks(masks: np.ndarray | None, n: int, h: int, w: int, what: str) -> np.ndarray:
    if masks is None:
        return np.zeros((n, h, w), bool)
    m = np.asarray(masks).astype(bool)
    if m.shape != (n, h, w):
        raise DatasetError(f"{what} must have shape {(n, h, w)}, got {m.shape}")
    return m


def _options(methods: Sequence[str], seed: int, thresholds: dict | None, cache_dir: str | None,
             kwargs: dict[str, Any]) -> AuditOptions:  # fmt: skip
    opts = AuditOptions(data="(in memory)", format="memory", methods=list(methods), seed=seed,
                        thresholds=dict(thresholds or {}), cache=cache_dir is not None,
                        cache_dir=cache_dir, **kwargs)  # fmt: skip
    opts.validate(need_model=False)
    return opts


def _prepared(model: nn.Module, mean, std, channel_order: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch nn.Module, got {type(model).__name__}")
    return ModelSpec(mean=mean, std=std, channel_order=channel_order).wrap(model.eval())


def audit(
    model: nn.Module,
    data: Dataset | ArrayData | Iterable[Any],
    methods: Sequence[str] = ("saliency", "lime"),
    *,
    class_names: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    tells: np.ndarray | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channel_order: str = "RGB",
    seed: int = 0,
    thresholds: dict[str, list[float]] | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    name: str = "model",
    **options: Any,
) -> AuditResult:
    """Audit ``model`` on ``data``; the same evidence, conditions and verdict as ``leakaudit
    audit``. ``options`` are any other ``AuditOptions`` field (``lime_samples``, ``device``,
    ``budget``, ``sanity``, ``discovery``, …). Write it out with ``write_report``."""
    configure()
    opts = _options(methods, seed, thresholds, cache_dir, options)
    ds = as_dataset(data, class_names, masks, tells)
    result = audit_one(opts, _prepared(model, mean, std, channel_order), name, ds, progress)
    return _result(f"leakaudit audit: {name}", ds, {name: result}, opts)


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Dataset | ArrayData | Iterable[Any],
    methods: Sequence[str] = ("saliency", "lime"),
    *,
    names: tuple[str, str] = ("A", "B"),
    class_names: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    tells: np.ndarray | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channel_order: str = "RGB",
    seed: int = 0,
    thresholds: dict[str, list[float]] | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    **options: Any,
) -> AuditResult:
    """Audit two models on the same images and add paired differences (A − B)."""
    if names[0] == names[1]:
        raise ConfigError("compare needs two different names")
    configure()
    opts = _options(methods, seed, thresholds, cache_dir, options)
    ds = as_dataset(data, class_names, masks, tells)
    audits = {
        n: audit_one(opts, _prepared(m, mean, std, channel_order), n, ds, progress)
        for n, m in zip(names, (model_a, model_b), strict=True)
    }
    result = _result(f"leakaudit compare: {names[0]} vs {names[1]}", ds, audits, opts)
    result.comparison = compare_audits(audits[names[0]], audits[names[1]], seed)
    return result


def _result(title: str, ds: Dataset, audits: dict, opts: AuditOptions) -> AuditResult:
    return AuditResult(
        title=title,
        class_names=list(ds.class_names),
        models=audits,
        eval_data=ds,
        gallery=gallery_indices(ds),
        seed=opts.seed,
        config=asdict(opts),
        thresholds=opts.threshold_lines,
        notes=[f"Audited {len(ds)} in-memory samples: {ds.counts()}."],
    )


def write(result: AuditResult, out_dir: str | Path) -> tuple[Path, Path]:
    """report.html, summary.md, summary.json (and results for `leakaudit report`) in out_dir."""
    from leakaudit.paths import check_out_dir
    from leakaudit.report import write_report

    return write_report(result, check_out_dir(out_dir))
