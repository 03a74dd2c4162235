"""``leakaudit audit`` on a user's data and model: read, load (or train), audit, return a result.

Options come from defaults < ``--config audit.toml`` < command-line flags; the effective options
are written into the report. Everything that is wrong with the input raises a ``LeakauditError``
subclass naming the file and the problem.
"""

from __future__ import annotations

import functools
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.budget import parse_duration
from leakaudit.auditing.eval_set import (  # noqa: F401  (importable from here as before)
    accuracy_notes,
    limit_notes,
    stratified_limit,
    tell_notes,
    unrepresented,
)
from leakaudit.auditing.model_audit import Checks, ModelAudit, audit_model, score_columns
from leakaudit.auditing.option_types import check_type, read_config, thresholds_of
from leakaudit.auditing.verdict import Thresholds
from leakaudit.data.build import LABEL_RULES, MODES
from leakaudit.data.formats import READERS, detect_format, read_dataset
from leakaudit.data.names import check_audit_classes
from leakaudit.data.samples import Dataset
from leakaudit.engines import EngineOptions, check_engine
from leakaudit.errors import ConfigError, DatasetError, ModelLoadError
from leakaudit.evidence.stats import paired_compare
from leakaudit.explain import EXPLAINERS
from leakaudit.explain.base import NotApplicable
from leakaudit.explain.cache import AttributionCache, default_cache_dir
from leakaudit.explain.gradcam import resolve_layer
from leakaudit.explain.lime import BASELINES
from leakaudit.explain.registry import method_params
from leakaudit.models.arch import is_bundled, meta_build
from leakaudit.models.fit import fit, stratified_split
from leakaudit.models.load import ModelSpec, check_output_width, load_model, read_checkpoint_meta
from leakaudit.models.zoo import ARCHITECTURES
from leakaudit.runtime import configure, resolve_device


@dataclass
class AuditOptions:
    """Every option of ``leakaudit audit``; each is settable in the TOML config too."""

    data: str | None = None
    format: str | None = None  # imagefolder | voc | coco | csv; None: detected from `data`
    mode: str = "image"  # image | crop (one sample per annotated object)
    size: int | None = None  # side to resize to; default: the model card's, else 64 for crops
    margin: float = 0.5  # crop context around each box, as a fraction of the box size
    window: float | None = None  # crop mode: fixed crop side in image pixels (replaces margin)
    classes: list[str] | None = None  # class order = model output order
    skip_unknown: bool = False
    label_rule: str = "unique"
    max_per_class: int | None = None
    images_root: str | None = None  # coco/csv: where the images are
    masks: str | None = None  # imagefolder: parallel tree of region masks
    tells: str | None = None  # tells.json of an injected copy (found automatically beside it)
    model: str | None = None
    arch: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: str | None = None  # a preset for mean/std: "imagenet" or "none"
    mean: list[float] | None = None
    std: list[float] | None = None
    channel_order: str = "RGB"
    force_classes: bool = False  # let --classes contradict the checkpoint's own class order
    insight: bool = False  # measure each class's visualisation against the strong suspects
    train: bool = False  # train a bundled model on part of the data and audit the rest
    epochs: int = 30
    test_fraction: float = 0.3
    methods: list[str] = field(default_factory=lambda: ["saliency", "lime"])
    lime_samples: int = 500
    lime_segments: int = 50
    lime_baseline: str = "blur"
    limit: int | None = None  # audit at most this many images (seeded, stratified)
    seed: int = 0
    discovery: bool = True
    sanity: bool = True
    ablation: bool = True
    thresholds: dict[str, list[float]] = field(default_factory=dict)
    cache: bool = True  # reuse attributions across runs (resume after an interruption)
    cache_dir: str | None = None  # None: the user cache folder (cache.default_cache_dir)
    out: str = "out/audit"
    device: str = "auto"  # auto | cpu | cuda | mps (auto: CUDA when available)
    amp: bool = False  # autocast the forward passes of LIME and occlusion
    budget: str | None = None  # e.g. "15m": costly methods explain a stratified sample
    layer: str | None = None  # Grad-CAM layer (default: the last conv layer)
    engine: str = "local"  # local | ray: where attributions and scores are computed
    ray_address: str | None = None  # ray: an existing cluster (default: start a local one)
    ray_workers: int | None = None  # ray: actors in the pool (default: one per CPU or GPU)

    @classmethod
    def merged(
        cls, config_path: str | None, cli: dict[str, Any], need_model: bool = True
    ) -> AuditOptions:
        """Defaults, then the TOML file (top level or an [audit] table), then CLI values."""
        values = read_config(config_path) if config_path else {}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"{config_path}: unknown option(s) {unknown} (known: {sorted(known)})"
            )
        for name, value in values.items():  # the file's own values, even those a flag replaces
            try:
                check_type(name, value, _HINTS[name])
            except ConfigError as e:
                raise ConfigError(f"{config_path}: {e}") from e
        values.update({k: v for k, v in cli.items() if v is not None})
        opts = cls(**values)
        opts.validate(need_model)
        return opts

    def validate(self, need_model: bool = True) -> None:
        """Every value against its type and range, before any data is read: the CLI, the TOML
        config and the Python API (which builds ``AuditOptions`` itself) all pass through here."""
        for f in fields(self):
            check_type(f.name, getattr(self, f.name), _HINTS[f.name])
        if not self.data:
            raise ConfigError("no dataset given: use --data PATH (or data = ... in the config)")
        if need_model and not self.model and not self.train:
            raise ConfigError("give a model with --model FILE, or --train to train one")
        unknown = [m for m in self.methods if m not in EXPLAINERS]
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}; known: {sorted(EXPLAINERS)}")
        if not self.methods:
            raise ConfigError("no attribution method given: use e.g. --methods saliency,lime")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ConfigError(f"{name}: expected one of {shown}, got {getattr(self, name)!r}")
        if self.preprocess and (self.mean is not None or self.std is not None):
            raise ConfigError("give either --preprocess or --mean/--std, not both")
        for name, lo, hi in (("limit", 1, None), ("max_per_class", 1, None), ("size", 8, 4096),
                             ("lime_samples", 8, None), ("seed", 0, 2**32 - 1), ("epochs", 1, None),
                             ("lime_segments", 2, None), ("ray_workers", 1, None),
                             ("margin", 0, None), ("window", 1, None)):  # fmt: skip
            v = getattr(self, name)
            if v is not None and (v < lo or (hi is not None and v > hi)):
                bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
                raise ConfigError(f"{name} must be {bound}, got {v}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be between 0 and 1, got {self.test_fraction}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) != 3:
                raise ConfigError(f"{name}: expected 3 numbers (R, G, B), got {v}")
        if self.std is not None and min(self.std) <= 0:
            raise ConfigError(f"std: every value must be > 0, got {self.std}")
        resolve_device(self.device)  # ConfigError now, not after reading the data
        check_engine(self.engine)
        parse_duration(self.budget)
        _ = self.threshold_lines
        if self.format is None:
            self.format = detect_format(self.data)
        if self.arch_kwargs and is_bundled(self.arch):  # a user's module is built at load
            try:
                meta_build(ARCHITECTURES[self.arch], self.arch_kwargs, 2)
            except ModelLoadError as e:
                raise ConfigError(str(e)) from e

    @functools.cached_property
    def threshold_lines(self) -> Thresholds:
        """``thresholds`` parsed once: validation, the audit and its result all use this."""
        return thresholds_of(self.thresholds)

    def normalisation(self, card: dict[str, Any]) -> tuple[Any, Any]:
        """(mean, std): --preprocess preset, else --mean/--std, else the model card's."""
        if self.preprocess:
            return PREPROCESS_PRESETS[self.preprocess]
        prep = card.get("preprocessing") or {}
        return (self.mean or prep.get("mean"), self.std or prep.get("std"))


# ImageNet statistics (torchvision's documented normalisation for its pretrained models).
PREPROCESS_PRESETS: dict[str | None, tuple[Any, Any]] = {
    None: (None, None),
    "none": (None, None),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


_HINTS = typing.get_type_hints(AuditOptions)
# options with a fixed set of values (None: left to a default or detected)
_CHOICES: dict[str, tuple[Any, ...]] = {
    "mode": MODES,
    "format": (None, "memory", *READERS),  # "memory": the Python API's in-memory dataset
    "label_rule": LABEL_RULES,
    "lime_baseline": BASELINES,
    "channel_order": ("RGB", "BGR"),
    "preprocess": tuple(PREPROCESS_PRESETS),
}


def read_options(opts: AuditOptions, size: int | None, classes: list[str] | None) -> dict:
    """Reader keyword arguments for the chosen format (each reader takes only its own)."""
    kw: dict[str, Any] = {"size": size, "classes": classes, "skip_unknown": opts.skip_unknown}
    kw["seed"] = opts.seed
    if opts.max_per_class:
        kw["max_per_class"] = opts.max_per_class
    if opts.tells:
        kw["tells_path"] = opts.tells
    if opts.format == "imagefolder":
        kw["masks_root"] = opts.masks
    else:
        kw.update(
            mode=opts.mode, label_rule=opts.label_rule, margin=opts.margin, window=opts.window
        )
        if opts.format in ("coco", "csv") and opts.images_root:
            kw["images_root"] = opts.images_root
    return kw


def _read(opts: AuditOptions, model_path: str | None, meta: dict) -> tuple[Dataset, int | None]:
    """The dataset, read with the class order and input size of the model's card ``meta``
    (read once per model by the caller: ``read_checkpoint_meta``; {} without a model)."""
    prep = meta.get("preprocessing") or {}
    classes = class_order(opts, meta, model_path)
    size = opts.size or prep.get("input_size") or (64 if opts.mode == "crop" else None)
    data = read_dataset(opts.data, opts.format, **read_options(opts, size, classes))
    if len(data) == 0:
        raise DatasetError(f"{opts.data}: no usable samples after reading and filtering")
    check_audit_classes(data, explicit=classes is not None)  # < 2 classes: nothing to compare
    return data, size


def class_order(opts: AuditOptions, meta: dict, model_path: str | None) -> list[str] | None:
    """--classes, else the model card's. A --classes that contradicts the card is an error
    unless --force-classes: a silently wrong class order makes every number wrong."""
    card = meta.get("classes")
    if opts.classes and card and list(opts.classes) != list(card) and not opts.force_classes:
        raise ConfigError(
            f"--classes {','.join(opts.classes)} contradicts the class order stored in "
            f"{model_path} ({','.join(card)}); drop --classes, or pass --force-classes if the "
            "card is wrong"
        )
    return opts.classes or card


def crop_mismatch(opts: AuditOptions, meta: dict, model_path: str) -> str | None:
    """A note when the model card says the model saw differently cut crops than this audit cuts:
    its predictions would then not be its real accuracy, and nothing else would say so."""
    trained = (meta.get("preprocessing") or {}).get("crop")
    if not trained:
        return None
    here = {"margin": opts.margin, "window": opts.window} if opts.mode == "crop" else None
    if here is not None and all(here[k] == trained.get(k) for k in here):
        return None

    def fmt(c: dict) -> str:
        return f"window {c['window']:g} px" if c.get("window") else f"margin {c['margin']:g}"

    cut = fmt(here) if here else f"no crops (mode {opts.mode})"
    return (
        f"Warning: {model_path} was trained on object crops cut with {fmt(trained)}; this audit "
        f"uses {cut}. Pass the training crop options (--mode crop --margin/--window) to audit "
        "the model on the inputs it was made for."
    )


def _load(
    opts: AuditOptions, path: str, data: Dataset, size: int | None, meta: dict
) -> tuple[nn.Module, ModelSpec, str | None]:
    """Load a user model with its preprocessing wrapped in, checked against the class list;
    also the crop-mismatch warning from the same card ``meta`` (``crop_mismatch``), or None."""
    mean, std = opts.normalisation(meta)
    spec = ModelSpec(
        path=path,
        arch=opts.arch or meta.get("arch"),
        kwargs=dict(opts.arch_kwargs or meta.get("arch_kwargs") or {}),
        input_size=size,
        mean=mean,
        std=std,
        channel_order=opts.channel_order,
        class_names=list(data.class_names),
    )
    # Only the user's own --arch may name code to import; a checkpoint's "arch" is data and
    # load_model accepts it only when it names a bundled architecture.
    model = load_model(path, opts.arch, opts.arch_kwargs or None, n_classes=len(data.class_names))
    check_output_width(model, spec, len(data.class_names))
    wrapped = spec.wrap(model)
    if opts.layer and "gradcam" in opts.methods:  # a typo is an error now, not a set-aside method
        try:
            resolve_layer(wrapped, opts.layer)
        except NotApplicable as e:
            raise ConfigError(f"--layer {opts.layer}: {e}") from e
    return wrapped, spec, crop_mismatch(opts, meta, path)


def audit_one(
    opts: AuditOptions, model: nn.Module, name: str, eval_data: Dataset, progress: bool
) -> ModelAudit:
    """One model on one evaluation set, with every option of `opts` (CLI and Python API)."""
    methods = method_params(opts.methods, lime_samples=opts.lime_samples,
                            lime_segments=opts.lime_segments, lime_baseline=opts.lime_baseline,
                            seed=opts.seed)  # fmt: skip
    checks = Checks(discovery=opts.discovery, sanity=opts.sanity, ablation=opts.ablation,
                    seed=opts.seed)  # fmt: skip
    audit = audit_model(
        model, name, eval_data, methods, accuracy=float("nan"),
        thresholds=opts.threshold_lines, gallery=gallery_indices(eval_data),
        progress=progress, checks=checks,
        cache=AttributionCache(opts.cache_dir or default_cache_dir(), opts.cache, probe=True),
        device=resolve_device(opts.device), amp=opts.amp, budget_s=parse_duration(opts.budget),
        layer=opts.layer, engine=EngineOptions(opts.engine, opts.ray_address, opts.ray_workers),
    )  # fmt: skip
    audit.accuracy = audit.eval_accuracy
    if opts.insight and len(eval_data):
        add_insight(model, audit, eval_data, opts.seed)
    return audit


INSIGHT_IMAGES = 8  # images on the model's insight page (viewer, feature maps, DeepDream)
# One ascent length on the audit's insight page: the page costs a few hundred ascent steps per
# class and channel, twice (trained and untrained twin), and 200 steps already show the content
# (docs/insight.md: 350 and 500 refine detail); `leakaudit insight` shows 200/350/500.
INSIGHT_STEPS = 200


def add_insight(model: nn.Module, audit: ModelAudit, data: Dataset, seed: int) -> None:
    """A second, annotation-free witness. Each class's visualisation (activation maximisation,
    200 steps) is kept for the report, which shows it next to the suspects, and measured against
    the strong suspected tells: does it paint a suspect's colour in its box? Informational: not
    a condition until calibration shows it separates clean from poisoned models
    (docs/insight.md). The model's full insight page is built too; write_report writes it."""
    from leakaudit.insight.activation_max import class_visualisations
    from leakaudit.insight.common import input_shape
    from leakaudit.insight.page import PageOptions, build_page
    from leakaudit.insight.witness import witness_from

    strong = [s.found for s in audit.suspects if s.found.strong][:3]
    suspects = [(list(f.box), list(f.colour)) for f in strong]
    size = int(data[0].shape[0])
    t0 = time.perf_counter()
    page_opts = PageOptions(steps=(INSIGHT_STEPS,), seed=seed, suspects=suspects)
    shape = input_shape(model, size)  # one ascent serves the witness and the page
    vis = class_visualisations(model, len(data.class_names), shape, page_opts.steps, seed,
                               page_opts.params)  # fmt: skip
    rows, pictures = witness_from(
        vis, data.class_names, suspects, INSIGHT_STEPS,
        class_colours=[{k: list(c) for k, c in f.colours.items()} for f in strong],
    )  # fmt: skip
    audit.insight = rows if suspects else []
    audit.insight_pictures = pictures
    shown = stratified_limit(data, INSIGHT_IMAGES, seed)
    audit.insight_page = build_page(
        model,
        data.class_names,
        shown.images(),
        shown.labels(),
        size,
        page_opts,
        title=f"leakaudit insight: {audit.name}",
        source=audit.name,
        classes=vis,
    )
    audit.seconds["insight"] = time.perf_counter() - t0


def gallery_indices(data: Dataset) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, len(data) - 1, num=min(8, len(data)))})


def run_audit(opts: AuditOptions, progress: bool = True) -> AuditResult:
    configure()
    card = read_checkpoint_meta(opts.model) if opts.model else {}
    data, size = _read(opts, opts.model, card)
    notes = [f"Dataset {opts.data} ({opts.format}, mode {opts.mode}): {len(data)} samples."]
    if opts.train:
        train_idx, test_idx = stratified_split(data.labels(), opts.test_fraction, opts.seed)
        model, report = fit(data.subset(train_idx), seed=opts.seed, epochs=opts.epochs,
                            progress=progress, device=resolve_device(opts.device))  # fmt: skip
        spec = ModelSpec(arch="small_cnn", input_size=size, class_names=list(data.class_names))
        eval_data = data.subset(test_idx)
        notes.append(
            f"Model trained here on {len(train_idx)} samples (validation accuracy "
            f"{report.get('val_accuracy', float('nan')):.3f}); audited on the "
            f"{len(test_idx)} held-out samples."
        )
    else:
        model, spec, warning = _load(opts, opts.model, data, size, card)
        notes += [warning] if warning else []
        eval_data = data
    limited = stratified_limit(eval_data, opts.limit, opts.seed)
    notes += limit_notes(eval_data, limited)
    eval_data = limited
    eval_data.problems = list(data.problems)
    audit = audit_one(opts, model, "model", eval_data, progress)
    notes += tell_notes(opts, eval_data) + accuracy_notes("The model", audit, eval_data)
    config = asdict(opts)
    config["model_spec"] = spec.to_dict()
    return AuditResult(
        title=f"leakaudit audit: {Path(opts.data).name}",
        class_names=list(data.class_names),
        models={"model": audit},
        eval_data=eval_data,
        gallery=gallery_indices(eval_data),
        seed=opts.seed,
        config=config,
        thresholds=opts.threshold_lines,
        notes=[*notes, f"Class counts audited: {eval_data.counts()}."],
    )


def compare_audits(a: ModelAudit, b: ModelAudit, seed: int) -> list[dict[str, Any]]:
    """Paired differences (a − b) per method and score on the same images, plus correctness."""
    rows = []
    for method in a.per_sample["method"].unique():
        pa = a.per_sample[a.per_sample["method"] == method].set_index("id")
        pb = b.per_sample[b.per_sample["method"] == method].set_index("id").loc[pa.index]
        for col in score_columns():  # every audited metric (metrics.py)
            diff = paired_compare(pa[col].to_numpy(), pb[col].to_numpy(), seed=seed)
            rows.append({"method": method, "score": col, **diff})
        if method == a.per_sample["method"].iloc[0]:
            right_a = (pa["pred"] == pa["label"]).to_numpy(float)
            right_b = (pb["pred"] == pb["label"]).to_numpy(float)
            rows.append({"method": "–", "score": "correct",
                         **paired_compare(right_a, right_b, seed=seed)})  # fmt: skip
    return rows


def run_compare(
    opts: AuditOptions, model_a: str, model_b: str, names: tuple[str, str] = ("A", "B"),
    progress: bool = True,
) -> AuditResult:  # fmt: skip
    """Audit two models on the same images (e.g. clean vs poisoned, or two releases) and add
    paired differences with bootstrap CIs, effect sizes (Cohen's d_z) and Wilcoxon p-values."""
    configure()
    cards = {model_a: read_checkpoint_meta(model_a)}
    data, size = _read(opts, model_a, cards[model_a])
    eval_data = stratified_limit(data, opts.limit, opts.seed)
    warnings = limit_notes(data, eval_data) + tell_notes(opts, eval_data)
    eval_data.problems = list(data.problems)
    audits, specs = {}, {}
    for name, path in zip(names, (model_a, model_b), strict=True):
        if path not in cards:
            cards[path] = read_checkpoint_meta(path)
        model, specs[name], warning = _load(opts, path, data, size, cards[path])
        warnings += [warning] if warning else []
        audits[name] = audit_one(opts, model, name, eval_data, progress)
        warnings += accuracy_notes(f"Model {name}", audits[name], eval_data)
    config = asdict(opts)
    config["model_specs"] = {n: s.to_dict() for n, s in specs.items()}
    result = AuditResult(
        title=f"leakaudit compare: {names[0]} vs {names[1]} on {Path(opts.data).name}",
        class_names=list(data.class_names),
        models=audits,
        eval_data=eval_data,
        gallery=gallery_indices(eval_data),
        seed=opts.seed,
        config=config,
        thresholds=opts.threshold_lines,
        notes=[
            f"Both models audited on the same {len(eval_data)} samples of {opts.data}.",
            f"Paired differences are {names[0]} − {names[1]}.",
            *warnings,
        ],
    )
    result.comparison = compare_audits(audits[names[0]], audits[names[1]], opts.seed)
    return result
