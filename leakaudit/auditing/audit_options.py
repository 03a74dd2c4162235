"""``AuditOptions``: every option of an audit, one object for both front doors.

``leakaudit audit``/``compare`` build it with ``AuditOptions.merged`` (defaults < ``--config`` TOML
< flags); ``leakaudit.audit``/``compare`` build it with ``AuditOptions.in_memory`` (keywords).
Both validate it the same way, and both hand it to the one builder (``pipeline.build_result``).
The object knows which door built it, so its messages name ``--flag`` on the command line and
``keyword=`` in Python (``spell``). Options that describe files mean nothing to an in-memory
audit; the Python door refuses them, saying what to pass instead (``FILE_ONLY``).
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from leakaudit.auditing.budget import parse_duration
from leakaudit.auditing.option_types import check_type, read_config, thresholds_of
from leakaudit.auditing.verdict import Thresholds
from leakaudit.data.build import LABEL_RULES, MODES
from leakaudit.data.formats import READERS, detect_format
from leakaudit.engines import check_engine
from leakaudit.errors import ConfigError, ModelLoadError
from leakaudit.explain import EXPLAINERS
from leakaudit.explain.lime import BASELINES, LIME_SAMPLES
from leakaudit.explain.registry import option_keys
from leakaudit.models.arch import is_bundled, meta_build
from leakaudit.models.zoo import ARCHITECTURES
from leakaudit.runtime import resolve_device

_READ = "read the files with leakaudit.read_dataset(path, ...) and pass that Dataset as data"
# Options that describe files: the Python door's data and model are already in memory.
FILE_ONLY: dict[str, str] = {
    "data": "pass the dataset as the data argument",
    "format": _READ,
    "mode": f"{_READ} (mode='crop' cuts one sample per object)",
    "size": f"resize the images before passing them, or {_READ} (size=...)",
    "margin": f"{_READ} (mode='crop', margin=...)",
    "window": f"{_READ} (mode='crop', window=...)",
    "label_rule": _READ,
    "skip_unknown": _READ,
    "max_per_class": f"use limit= (a seeded, stratified sample), or {_READ}",
    "images_root": _READ,
    "classes": "use class_names= (the model's output order)",
    "force_classes": "class_names= sets the order; there is no model card to contradict",
    "model": "pass the nn.Module itself (leakaudit.load_model(path, arch=...) reads a file)",
    "arch": "pass the nn.Module itself (leakaudit.load_model(path, arch=...) reads a file)",
    "arch_kwargs": "pass the nn.Module itself (leakaudit.load_model(path, arch=...) reads a file)",
}


@dataclass
class AuditOptions:
    """Every option of ``leakaudit audit``; each is settable in the TOML config too, and each
    is a keyword of ``leakaudit.audit`` unless ``FILE_ONLY`` refuses it there."""

    door: ClassVar[str] = "cli"  # "python" on an object built by ``in_memory``

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
    lime_samples: int = LIME_SAMPLES
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
    out: str | None = "out/audit"  # Python: None (the default there) writes no report
    device: str = "auto"  # auto | cpu | cuda | mps (auto: CUDA when available)
    amp: bool = False  # autocast the forward passes of LIME and occlusion
    budget: str | None = None  # e.g. "15m": costly methods explain a stratified sample
    layer: str | None = None  # Grad-CAM layer (default: the output of the last conv block)
    # options a method declares itself (``CliOption``; ``registry.option_keys``), e.g. a
    # registered plugin's ``--toy-passes``: key → value, handed to that method's parameters
    method_options: dict[str, Any] = field(default_factory=dict)
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

    @classmethod
    def in_memory(cls, **values: Any) -> AuditOptions:
        """The Python door's options (``leakaudit.audit``/``compare`` keywords): file options
        refused, each naming what to pass instead; then the same ``validate`` as the CLI's."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            usable = sorted(known - set(FILE_ONLY))
            raise ConfigError(f"unknown option(s) {unknown} (known: {usable})")
        for name, value in values.items():  # types first: the same words as the config's
            check_type(name, value, _HINTS[name])
        for name in values:
            if name in FILE_ONLY:
                raise ConfigError(f"{name}= means nothing to an in-memory audit: {FILE_ONLY[name]}")
        values.setdefault("out", None)
        opts = cls(data="(in memory)", format="memory", **values)
        opts.door = "python"
        opts.validate(need_model=False)
        return opts

    def spell(self, name: str, value: str = "") -> str:
        """An option as this door's user writes it: ``--name-with-dashes VALUE`` on the command
        line, ``name=VALUE`` in Python."""
        if self.door == "python":
            return f"{name}={value}"
        return f"--{name.replace('_', '-')}" + (f" {value}" if value else "")

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
            example = self.spell("methods", "saliency,lime")
            raise ConfigError(f"no attribution method given: use e.g. {example}")
        self._check_method_options()
        for name, allowed in {**_CHOICES, "format": (None, "memory", *READERS)}.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise ConfigError(f"{name}: expected one of {shown}, got {getattr(self, name)!r}")
        if self.preprocess and (self.mean is not None or self.std is not None):
            raise ConfigError(
                f"give either {self.spell('preprocess')} or {self.spell('mean')}/"
                f"{self.spell('std')}, not both"
            )
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
        if self.format is None and self.door == "cli":
            self.format = detect_format(self.data)
        if self.arch_kwargs and is_bundled(self.arch):  # a user's module is built at load
            try:
                meta_build(ARCHITECTURES[self.arch], self.arch_kwargs, 2)
            except ModelLoadError as e:
                raise ConfigError(str(e)) from e

    def _check_method_options(self) -> None:
        """Each key must be an option some registered method declares (and not one of the
        fields above), its value of the declared type, range and choices."""
        declared, own = option_keys(), {f.name for f in fields(self)}
        for key, value in self.method_options.items():
            opt = declared.get(key)
            if opt is None or key in own:
                known = sorted(k for k in declared if k not in own)
                raise ConfigError(f"method_options.{key}: no method declares it (known: {known})")
            ok = isinstance(value, opt.type) and not isinstance(value, bool)
            ok = ok or (
                opt.type is float and isinstance(value, int) and not isinstance(value, bool)
            )
            if not ok:
                raise ConfigError(f"{self.spell(key)}: expected {opt.type.__name__}, got {value!r}")
            if opt.minimum is not None and value < opt.minimum:
                raise ConfigError(f"{self.spell(key)} must be at least {opt.minimum}, got {value}")
            if opt.choices and value not in opt.choices:
                raise ConfigError(f"{self.spell(key)}: expected one of {', '.join(opt.choices)}")

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
# options with a fixed set of values (None: left to a default or detected); "format" is read
# from the registry when checked (a format registered later counts; "memory": the Python API's)
_CHOICES: dict[str, tuple[Any, ...]] = {
    "mode": MODES,
    "label_rule": LABEL_RULES,
    "lime_baseline": BASELINES,
    "channel_order": ("RGB", "BGR"),
    "preprocess": tuple(PREPROCESS_PRESETS),
}
