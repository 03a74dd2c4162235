"""The audit's one builder (``build_result``) and its file door (``run_audit``/``run_compare``).

``leakaudit audit``/``compare`` read the user's files here (dataset, model or ``--train``) and
``leakaudit.audit``/``compare`` (api.py) bring theirs in memory; both then call ``build_result``
with the same ``AuditOptions`` (audit_options.py), which applies ``limit``, audits each model,
adds every note and warning and, for two models, the paired comparison. So the numbers, notes,
cache and errors are the same through either door. Everything wrong with the input raises a
``LeakauditError`` subclass naming the file (or keyword) and the problem.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from leakaudit.auditing.audit_options import (  # noqa: F401  (importable from here as before)
    PREPROCESS_PRESETS,
    AuditOptions,
)
from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.audit_steps import AuditSteps
from leakaudit.auditing.budget import parse_duration
from leakaudit.auditing.eval_set import (  # noqa: F401  (importable from here as before)
    accuracy_notes,
    limit_notes,
    stratified_limit,
    tell_notes,
    unrepresented,
)
from leakaudit.auditing.model_audit import ModelAudit, audit_model, score_columns
from leakaudit.data.formats import read_dataset
from leakaudit.data.names import check_audit_classes
from leakaudit.data.samples import Dataset
from leakaudit.engines import EngineOptions
from leakaudit.errors import ConfigError, DatasetError
from leakaudit.evidence.stats import paired_compare
from leakaudit.explain.base import NotApplicable
from leakaudit.explain.cache import AttributionCache, default_cache_dir
from leakaudit.explain.gradcam import resolve_layer
from leakaudit.explain.registry import method_params
from leakaudit.models.fit import fit, stratified_split
from leakaudit.models.load import ModelSpec, check_output_width, load_model, read_checkpoint_meta
from leakaudit.runtime import configure, resolve_device


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


@dataclass
class Candidate:
    """A model ready to audit: its preprocessing wrapped in, its spec (the report's config
    records it) and a note about it for the report (crop mismatch, trained here) or None."""

    model: nn.Module
    spec: ModelSpec
    note: str | None = None


def _load(opts: AuditOptions, path: str, data: Dataset, size: int | None, meta: dict) -> Candidate:
    """Load a user model with its preprocessing wrapped in, checked against the class list;
    the note is the crop-mismatch warning from the same card ``meta`` (``crop_mismatch``)."""
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
    return Candidate(spec.wrap(model), spec, crop_mismatch(opts, meta, path))


def train_here(
    opts: AuditOptions, data: Dataset, size: int | None, progress: bool
) -> tuple[Candidate, Dataset]:
    """``train``: a bundled small_cnn fitted on a stratified share of ``data``, and the held-out
    rest, which is what gets audited."""
    train_idx, test_idx = stratified_split(data.labels(), opts.test_fraction, opts.seed)
    model, report = fit(data.subset(train_idx), seed=opts.seed, epochs=opts.epochs,
                        progress=progress, device=resolve_device(opts.device))  # fmt: skip
    spec = ModelSpec(arch="small_cnn", input_size=size, class_names=list(data.class_names))
    note = (
        f"Model trained here on {len(train_idx)} samples (validation accuracy "
        f"{report.get('val_accuracy', float('nan')):.3f}); audited on the "
        f"{len(test_idx)} held-out samples."
    )
    return Candidate(model, spec, note), data.subset(test_idx)


def check_layer(opts: AuditOptions, model: nn.Module) -> None:
    """A Grad-CAM layer that does not exist is an error before the work, not a set-aside method."""
    if opts.layer and "gradcam" in opts.methods:
        try:
            resolve_layer(model, opts.layer)
        except NotApplicable as e:
            raise ConfigError(f"{opts.spell('layer', opts.layer)}: {e}") from e


def audit_one(
    opts: AuditOptions, model: nn.Module, name: str, eval_data: Dataset, progress: bool
) -> ModelAudit:
    """One model on one evaluation set, with every option of `opts` (CLI and Python API)."""
    methods = method_params(opts.methods, lime_samples=opts.lime_samples,
                            lime_segments=opts.lime_segments, lime_baseline=opts.lime_baseline,
                            seed=opts.seed, method_options=opts.method_options)  # fmt: skip
    checks = AuditSteps(discovery=opts.discovery, sanity=opts.sanity, ablation=opts.ablation,
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


def build_result(
    opts: AuditOptions,
    data: Dataset,
    models: dict[str, Candidate] | None,
    *,
    title: str,
    head: list[str],
    progress: bool,
    size: int | None = None,
) -> AuditResult:
    """The one builder behind both doors (CLI: ``run_audit``/``run_compare``; Python:
    ``leakaudit.audit``/``compare``). ``models`` None: train one (``opts.train``) on part of
    ``data``. Then ``limit`` (seeded, stratified), each model audited on the same images, the
    notes (``head`` first: where the data came from), the warnings (limit, tells, near-chance
    accuracy) and, for two models, the paired differences (first − second)."""
    eval_data = data
    if models is None:
        trained, eval_data = train_here(opts, data, size, progress)
        models = {"model": trained}
    elif opts.train:
        raise ConfigError(f"{opts.spell('train')} trains its own model: give no model with it")
    for candidate in models.values():
        check_layer(opts, candidate.model)
    limited = stratified_limit(eval_data, opts.limit, opts.seed)
    limited.problems = list(data.problems)
    notes = [*head, *(c.note for c in models.values() if c.note)]
    notes += limit_notes(eval_data, limited) + _tell_notes(opts, limited)
    audits = {}
    for name, candidate in models.items():
        audits[name] = audit_one(opts, candidate.model, name, limited, progress)
        who = "The model" if len(models) == 1 else f"Model {name}"
        notes += accuracy_notes(who, audits[name], limited)
    config = asdict(opts)
    specs = {n: c.spec.to_dict() for n, c in models.items()}
    if len(specs) == 1:
        config["model_spec"] = next(iter(specs.values()))
    else:
        config["model_specs"] = specs
    result = AuditResult(
        title=title,
        class_names=list(data.class_names),
        models=audits,
        eval_data=limited,
        gallery=gallery_indices(limited),
        seed=opts.seed,
        config=config,
        thresholds=opts.threshold_lines,
        notes=[*notes, f"Class counts audited: {limited.counts()}."],
    )
    if len(audits) == 2:
        first, second = audits.values()
        result.comparison = compare_audits(first, second, opts.seed)
    return result


def _tell_notes(opts: AuditOptions, data: Dataset) -> list[str]:
    """``tell_notes`` (it looks for a tells.json beside ``--data``); in memory there is no file
    to look for, only the ``tells=`` masks."""
    if opts.door == "cli":
        return tell_notes(opts, data)
    if any(s.tell is not None and s.tell.any() for s in data):
        return []
    return ["No tell annotations (tells=): the verdict rests on discovered suspects."]


def run_audit(opts: AuditOptions, progress: bool = True) -> AuditResult:
    """``leakaudit audit``: read the dataset, load the model (or train one), ``build_result``."""
    configure()
    card = read_checkpoint_meta(opts.model) if opts.model else {}
    data, size = _read(opts, opts.model, card)
    models = None if opts.train else {"model": _load(opts, opts.model, data, size, card)}
    head = [f"Dataset {opts.data} ({opts.format}, mode {opts.mode}): {len(data)} samples."]
    return build_result(opts, data, models, title=f"leakaudit audit: {Path(opts.data).name}",
                        head=head, progress=progress, size=size)  # fmt: skip


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
    models = {}
    for name, path in zip(names, (model_a, model_b), strict=True):
        if path not in cards:
            cards[path] = read_checkpoint_meta(path)
        models[name] = _load(opts, path, data, size, cards[path])
    head = [f"Both models audited on the same samples of {opts.data} (class counts below).",
            f"Paired differences are {names[0]} − {names[1]}."]  # fmt: skip
    title = f"leakaudit compare: {names[0]} vs {names[1]} on {Path(opts.data).name}"
    return build_result(opts, data, models, title=title, head=head, progress=progress)
