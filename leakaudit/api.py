"""The Python API: audit a model that is already in memory, on data that is already in memory.

The command line reads files; notebooks and training scripts hold an ``nn.Module`` and a torch
``Dataset``/``DataLoader`` or numpy arrays. These functions accept those directly, build the same
``AuditOptions`` as the CLI (``AuditOptions.in_memory``) and call the same builder
(``pipeline.build_result``), so numbers, notes, warnings and the cache agree between the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.pipeline import AuditOptions, Candidate, build_result
from leakaudit.data.samples import Dataset, Sample
from leakaudit.errors import ConfigError, DatasetError
from leakaudit.models.load import ModelSpec, check_output_width
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
    for what, m in (("masks", masks), ("tells", tells)):
        if isinstance(m, (str, Path)):
            raise ConfigError(
                f"{what}= takes an N×H×W array, not a path; to read {what} from files, read the "
                "data with leakaudit.read_dataset(path, ...) and pass that Dataset as data"
            )
    if isinstance(data, Dataset):
        given = [k for k, v in (("class_names", class_names), ("masks", masks), ("tells", tells))
                 if v is not None]  # fmt: skip
        if given:
            raise ConfigError(
                f"{'=, '.join(given)}= would be ignored: a leakaudit Dataset carries its own class "
                "names, region masks and tells (set them when reading it)"
            )
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
    """The keywords as ``AuditOptions`` (``in_memory``: file options refused, then validated)."""
    for name in ("mean", "std"):  # tuples are fine in Python; the options hold lists
        if kwargs.get(name) is not None:
            kwargs[name] = list(kwargs[name])
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k not in ("mean", "std")}
    return AuditOptions.in_memory(methods=list(methods), seed=seed,
                                  thresholds=dict(thresholds or {}), cache_dir=cache_dir,
                                  **kwargs)  # fmt: skip


def _candidate(model: nn.Module, opts: AuditOptions, ds: Dataset) -> Candidate:
    """The model with the normalisation of ``opts`` wrapped in, its output width checked on one
    blank image of the data's size (as the CLI checks a loaded model)."""
    if not isinstance(model, nn.Module):
        hint = "; or pass None with train=True to train one" if model is None else ""
        raise ConfigError(f"model must be a torch nn.Module, got {type(model).__name__}{hint}")
    mean, std = opts.normalisation({})
    spec = ModelSpec(mean=mean, std=std, channel_order=opts.channel_order,
                     class_names=list(ds.class_names))  # fmt: skip
    side = int(ds[0].image.shape[0])
    check_output_width(model, replace(spec, input_size=side), len(ds.class_names))
    return Candidate(spec.wrap(model.eval()), spec)


def _check_out(opts: AuditOptions) -> None:
    """``out=``: the folder is checked before the work, as the CLI checks ``--out``."""
    if opts.out is not None:
        from leakaudit.paths import check_out_dir
        from leakaudit.report.outputs import check_report_targets

        check_out_dir(opts.out)
        check_report_targets(opts.out, None)


def audit(
    model: nn.Module | None,
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
    """Audit ``model`` on ``data``: the same options, evidence, conditions, verdict, notes and
    warnings (near-chance accuracy, ``limit``, tells) as ``leakaudit audit``, through the same
    builder (``pipeline.build_result``).

    ``options`` are the other ``leakaudit audit`` options as keywords: ``limit`` (audit N images,
    seeded and stratified as ``--limit``), ``lime_samples``, ``device``, ``budget``, ``sanity``,
    ``discovery``, ``ablation``, ``insight``, ``layer``, ``engine``, ``preprocess``, …;
    ``train=True`` (with ``model=None``) trains the bundled small_cnn on ``1 - test_fraction``
    of the data and audits the rest; ``out="folder"`` also writes the report there (checked
    before the work; the same files as ``write_report``). Options that describe files
    (``format``, ``mode``, ``size``, ``margin``, ``window``, ``images_root``, ``classes``,
    ``model``, ``arch``, …) are refused with a ``ConfigError`` saying what to pass instead.

    The attribution cache is on, in the same folder as the CLI's (``$LEAKAUDIT_CACHE_DIR``, else
    the user cache folder; ``cache_dir=`` another): re-running a cell after an interruption
    resumes instead of starting over, and a changed model has a new fingerprint, so it never
    reads another model's entries. ``cache=False`` neither reads nor writes it."""
    configure()
    options.update(mean=mean, std=std, channel_order=channel_order)
    opts = _options(methods, seed, thresholds, cache_dir, options)
    ds = as_dataset(data, class_names, masks, tells)
    if opts.train and model is not None:
        raise ConfigError("train=True trains a model here: pass None as the model")
    models = None if opts.train else {name: _candidate(model, opts, ds)}
    _check_out(opts)
    head = [f"In-memory dataset: {len(ds)} samples."]
    result = build_result(opts, ds, models, title=f"leakaudit audit: {name}", head=head,
                          progress=progress)  # fmt: skip
    if opts.out is not None:
        write(result, opts.out)
    return result


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
    """Audit two models on the same images and add paired differences (A − B); the options,
    the cache and ``out=`` work as in ``audit`` (``train`` is refused: compare needs two
    models)."""
    if names[0] == names[1]:
        raise ConfigError("compare needs two different names")
    configure()
    options.update(mean=mean, std=std, channel_order=channel_order)
    opts = _options(methods, seed, thresholds, cache_dir, options)
    ds = as_dataset(data, class_names, masks, tells)
    models = {n: _candidate(m, opts, ds) for n, m in zip(names, (model_a, model_b), strict=True)}
    _check_out(opts)
    head = [f"Both models audited on the same in-memory samples ({len(ds)} given).",
            f"Paired differences are {names[0]} − {names[1]}."]  # fmt: skip
    result = build_result(opts, ds, models, title=f"leakaudit compare: {names[0]} vs {names[1]}",
                          head=head, progress=progress)  # fmt: skip
    if opts.out is not None:
        write(result, opts.out)
    return result


def write(result: AuditResult, out_dir: str | Path) -> tuple[Path, Path]:
    """report.html, summary.md, summary.json (and results for `leakaudit report`) in out_dir."""
    from leakaudit.paths import check_out_dir
    from leakaudit.report import write_report

    return write_report(result, check_out_dir(out_dir))
