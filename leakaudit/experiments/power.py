"""Detection power of the audit: how often a planted tell is caught, and how often a clean model
is wrongly flagged, over tell sizes, prevalences, seeds, colours and positions.

One run = one (seed, size, prevalence) cell: a poisoned SmallCNN trained on that cell's poisoned
twin of the demo data, and the seed's clean model (trained once per seed, it never sees a tell),
both audited with ``audit_model`` on the cell's *same* poisoned evaluation images — the demo's
protocol. Tell colours (one per class) and the tell position (a corner or a fixed x, y) are drawn
at random from the seed, so the numbers are not tied to the demo's palette or corner; the cells
of one seed share them, so size and prevalence effects are paired comparisons.

Every condition value of every clean and poisoned audit is kept: ``calibration_table`` puts their
spread next to the warn/fail thresholds, which is the evidence that the thresholds were fixed
beforehand, not fitted to the demo. A clean model flagged as leaking counts as a false alarm in
every cell where it happens (the clean model is shared, its evaluation images are not).

Audit validity v2 axes: ``kinds`` (solid, logo, text, border, noise; ``tells.TellSpec.kind``),
``random_place`` (a new place per image instead of the seed's fixed one) and ``jpeg_quality``.
Each run also reports what the audit finds *without* annotations: ``blind_detected`` (a
"suspected tell" condition fails — discovery never sees the tell masks) and ``coverage`` (share
of tell-bearing images whose tell the top suspect's per-image box covers by ≥ ``COVER_SHARE``).
Each seed's clean model is also audited on *clean* images (no tell anywhere, no annotations):
``clean_audits``, the false alarm where it matters — a user auditing an honest model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leakaudit.auditing.model_audit import AuditSteps, audit_model
from leakaudit.auditing.verdict import Thresholds
from leakaudit.data.samples import Dataset, split_indices
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import CORNERS, TellSpec, poison
from leakaudit.errors import ConfigError
from leakaudit.experiments.demo import DemoConfig, demo_methods, train_model
from leakaudit.experiments.power_measures import (  # noqa: F401 (importable from here as before)
    _blind,
    _conditions,
    _discovery,
    relied_classes,
    suspect_coverage,
)
from leakaudit.experiments.power_result import (  # noqa: F401  (the tables: importable from here as before)
    COVER_SHARE,
    DISCOVERY_IOU,
    MIN_DETECTION,
    PowerResult,
    PowerRun,
    _rate,
    calibration_table,
    format_calibration_table,
    format_power_table,
    wilson_interval,
    write_power,
)
from leakaudit.jsonable import jsonable
from leakaudit.models.predict import accuracy
from leakaudit.runtime import configure

MIN_COLOUR_DISTANCE = 0.6  # L1 distance between any two classes' tell colours (as make_shapes)


# ---------------------------------------------------------------- random tell appearance


@dataclass(frozen=True)
class TellStyle:
    """The random part of a tell for one seed: a colour per class and where the box sits.

    ``position`` is a corner name, or fractions (fx, fy) of the free range, so one style fits
    every tell size of the sweep."""

    colours: dict[int, tuple[float, float, float]]
    position: str | tuple[float, float]

    def position_for(self, tell_size: int, image_size: int, margin: int) -> str | tuple[int, int]:
        """The TellSpec position for one tell size: corner names pass through, fractions map to
        pixels inside the margin."""
        if isinstance(self.position, str):
            return self.position
        free = image_size - 2 * margin - tell_size
        fx, fy = self.position
        return (margin + int(round(fx * free)), margin + int(round(fy * free)))

    def describe(self) -> dict[str, Any]:
        return {
            "colours": {str(k): [round(c, 3) for c in v] for k, v in self.colours.items()},
            "position": self.position if isinstance(self.position, str) else list(self.position),
        }


def draw_style(seed: int, n_classes: int) -> TellStyle:
    """Seeded random colours (pairwise L1 ≥ 0.6, else they would not tell classes apart) and a
    position: one of the four corners or a uniform fixed spot, half the time each."""
    rng = np.random.default_rng([seed, 0x7E11])
    colours: list[np.ndarray] = []
    for _ in range(n_classes):
        best, best_gap = None, -1.0
        for _ in range(1000):
            c = rng.uniform(0, 1, size=3)
            gap = min((float(np.abs(c - o).sum()) for o in colours), default=np.inf)
            if gap >= MIN_COLOUR_DISTANCE:
                best = c
                break
            if gap > best_gap:
                best, best_gap = c, gap
        colours.append(best)  # type: ignore[arg-type]
    if rng.random() < 0.5:
        position: str | tuple[float, float] = CORNERS[int(rng.integers(len(CORNERS)))]
    else:
        position = (float(rng.uniform()), float(rng.uniform()))
    return TellStyle({k: tuple(float(v) for v in c) for k, c in enumerate(colours)}, position)


# ---------------------------------------------------------------- one run


def _run_cell(
    c: DemoConfig,
    clean: Dataset,
    split: tuple[np.ndarray, np.ndarray],
    clean_model: nn.Module,
    clean_acc: float,
    style: TellStyle,
    thresholds: Thresholds,
    lime: bool,
    checks: AuditSteps | None,
    kind: str = "solid",
    random_place: bool = False,
    jpeg_quality: int | None = None,
) -> PowerRun:
    t0 = time.perf_counter()
    train_idx, test_idx = split
    spec = TellSpec(
        size=c.tell_size,
        position="random"
        if random_place
        else style.position_for(c.tell_size, c.size, TellSpec.margin),
        prevalence=c.prevalence,
        colours=style.colours,
        kind=kind,
        jpeg_quality=jpeg_quality,
    )
    poisoned = poison(clean, spec, seed=c.seed + 1)
    model, own_acc = train_model(c, poisoned, train_idx, test_idx, "train poisoned", progress=False)
    test_clean = clean.subset(test_idx)
    acc_on_clean = accuracy(model, test_clean.images(), test_clean.labels())
    eval_data = poisoned.subset(test_idx[: c.n_eval])
    everything = list(range(len(eval_data)))  # keep all maps: discovery needs them
    methods = demo_methods(c, lime)
    audits = {
        name: audit_model(
            m,
            name,
            eval_data,
            methods,
            accuracy=acc,
            thresholds=thresholds,
            colours={k: spec.colour_for(k) for k in range(c.n_classes)},
            checks=checks,
            gallery=everything,
            progress=False,
        )
        for name, m, acc in (("clean", clean_model, clean_acc), ("poisoned", model, own_acc))
    }
    # fixed place: rng unused; random place: the IoU column is meaningless, coverage counts
    true_box = spec.box_for(c.size, c.size, np.random.default_rng(0))
    discovery = {
        f"{name}_{method}": _discovery(audits[name], eval_data, method, true_box, c.seed + 5)
        for name in audits
        for method in methods
    }
    return PowerRun(
        seed=c.seed,
        size=c.tell_size,
        prevalence=c.prevalence,
        position=spec.position,
        colours=dict(style.colours),
        verdicts={k: a.verdict for k, a in audits.items()},
        conditions={k: _conditions(a) for k, a in audits.items()},
        clean_accuracy=clean_acc,
        poisoned_accuracy=own_acc,
        poisoned_accuracy_on_clean=acc_on_clean,
        eval_accuracy={k: a.eval_accuracy for k, a in audits.items()},
        discovery=discovery,
        seconds=time.perf_counter() - t0,
        kind=kind if jpeg_quality is None else f"{kind}+jpeg{jpeg_quality}",
        blind={name: _blind(a, eval_data) for name, a in audits.items()},
    )


# ---------------------------------------------------------------- the sweep


def _validate(sizes, prevalences, seeds, base: DemoConfig) -> None:
    if not sizes or not prevalences or not seeds:
        raise ConfigError("power: sizes, prevalences and seeds must each name at least one value")
    for s in sizes:
        if s < 1 or s + 2 * TellSpec.margin > base.size:
            raise ConfigError(f"tell size {s} does not fit a {base.size}×{base.size} image")
    for p in prevalences:
        if not 0.0 < p <= 1.0:
            raise ConfigError(f"prevalence must be in (0, 1], got {p}")


def run_power(
    sizes: Sequence[int] = (4, 6, 8, 10),
    prevalences: Sequence[float] = (0.5, 0.8, 1.0),
    seeds: Sequence[int] = (0, 1),
    base: DemoConfig | None = None,
    thresholds: Thresholds | None = None,
    progress: bool = True,
    lime: bool = True,
    checks: AuditSteps | None = None,
    threads: int | None = None,
    kinds: Sequence[str] = ("solid",),
    random_place: bool = False,
    jpeg_quality: int | None = None,
    clean_data_audit: bool = False,
    on_run: Callable[[str, dict[str, Any]], None] | None = None,
    dataset: Callable[[int], Dataset] | None = None,
) -> PowerResult:
    """Audit a clean and a poisoned model per (seed, size, prevalence); see the module docstring.

    ``base`` (default ``DemoConfig.quick()``) gives data, training and LIME settings; its seed,
    tell size, position and prevalence are replaced by the sweep's. ``lime=False`` audits with
    saliency only (faster; fewer conditions). ``checks``: the audit's extra evidence (default:
    all, as shipped). ``threads``: torch threads during the sweep, restored afterwards — on a
    busy machine one thread is several times faster than oversubscribed ones. ``kinds``,
    ``random_place``, ``jpeg_quality``: the tells planted (see the module docstring);
    ``clean_data_audit``: also audit each clean model on clean images without annotations.
    ``on_run(what, record)`` is called as each run or clean-data audit finishes ("run" /
    "clean"), so a long sweep on a busy machine leaves its results as it goes. ``dataset(seed)``
    replaces the synthetic shapes with real clean data (e.g. object crops with region masks;
    its images must be ``base.size`` px): the classes and image count come from it."""
    configure()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        extra = {
            "kinds": list(kinds),
            "random_place": random_place,
            "jpeg_quality": jpeg_quality,
            "clean_data_audit": clean_data_audit,
            "on_run": on_run,
            "dataset": dataset,
        }
        return _sweep(sizes, prevalences, seeds, base, thresholds, progress, lime, checks, extra)
    finally:
        torch.set_num_threads(before)


def _sweep(
    sizes, prevalences, seeds, base, thresholds, progress, lime, checks, extra=None
) -> PowerResult:
    extra = extra or {"kinds": ["solid"]}
    kinds = [str(k) for k in extra["kinds"]]
    for k in kinds:
        TellSpec(kind=k).validate(base.size if base else 48, base.size if base else 48)
    base = base or DemoConfig.quick()
    thresholds = thresholds or Thresholds()
    sizes, prevalences, seeds = (
        [int(s) for s in sizes],
        [float(p) for p in prevalences],
        list(seeds),
    )
    _validate(sizes, prevalences, seeds, base)
    t_start = time.perf_counter()
    runs: list[PowerRun] = []
    clean_audits: dict[int, dict[str, Any]] = {}
    styles: dict[int, dict[str, Any]] = {}
    seconds: dict[str, float] = {"train_clean": 0.0}
    bar = tqdm(
        total=len(seeds) * (1 + len(kinds) * len(sizes) * len(prevalences)),
        desc="power",
        unit="model",
        disable=not progress,
    )
    for seed in seeds:
        c = replace(base, seed=int(seed))
        bar.set_postfix(seed=seed, step="clean")
        t0 = time.perf_counter()
        if extra.get("dataset") is not None:  # real data: its classes and size decide
            clean = extra["dataset"](c.seed)
            c = replace(c, n_classes=len(clean.class_names), n_images=len(clean))
        else:
            clean = make_shapes(c.n_images, seed=c.seed, size=c.size, n_classes=c.n_classes)
        style = draw_style(c.seed, c.n_classes)
        styles[c.seed] = style.describe()
        split = split_indices(len(clean), c.test_fraction, seed=c.seed + 2)
        clean_model, clean_acc = train_model(c, clean, *split, "train clean", progress=False)
        seconds["train_clean"] += time.perf_counter() - t0
        bar.update(1)
        report = extra.get("on_run") or (lambda what, record: None)
        if extra.get("clean_data_audit"):
            clean_audits[c.seed] = audit_clean_data(c, clean, split, clean_model, thresholds)
            report(
                "clean", jsonable({"seed": c.seed, "accuracy": clean_acc, **clean_audits[c.seed]})
            )
        for kind in kinds:
            for size in sizes:
                for prev in prevalences:
                    bar.set_postfix(seed=seed, kind=kind, size=size, prevalence=prev)
                    cell = replace(c, tell_size=size, prevalence=prev)
                    runs.append(
                        _run_cell(
                            cell,
                            clean,
                            split,
                            clean_model,
                            clean_acc,
                            style,
                            thresholds,
                            lime,
                            checks,
                            kind,
                            bool(extra.get("random_place")),
                            extra.get("jpeg_quality"),
                        )
                    )
                    report("run", runs[-1].to_json())
                    bar.update(1)
    bar.close()
    seconds["cells"] = float(sum(r.seconds for r in runs))
    seconds["total"] = time.perf_counter() - t_start
    cfg = asdict(base)
    for swept in ("seed", "tell_size", "tell_position", "prevalence"):
        cfg.pop(swept)
    cfg["lime"] = lime
    cfg.update({k: v for k, v in extra.items() if k not in ("kinds", "on_run", "dataset")})
    if extra.get("dataset") is not None:
        cfg["data"] = getattr(extra["dataset"], "description", "user dataset")
    return PowerResult(
        runs, sizes, prevalences, seeds, cfg, thresholds, styles, seconds, kinds, clean_audits
    )


def clean_false_alarms(
    seeds: Sequence[int],
    base: DemoConfig | None = None,
    threads: int | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """One independent clean model per seed (own data, split and init), each audited on its own
    clean test images without annotations (``audit_clean_data``)."""
    configure()
    base = base or DemoConfig.quick()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    rows = []
    try:
        for seed in seeds:
            t0 = time.perf_counter()
            c = replace(base, seed=int(seed))
            clean = make_shapes(c.n_images, seed=c.seed, size=c.size, n_classes=c.n_classes)
            split = split_indices(len(clean), c.test_fraction, seed=c.seed + 2)
            model, acc = train_model(c, clean, *split, "train clean", progress=False)
            row = audit_clean_data(c, clean, split, model, Thresholds())
            row.update(seed=c.seed, accuracy=acc, seconds=time.perf_counter() - t0)
            rows.append(jsonable(row))
            if on_row is not None:
                on_row(rows[-1])
    finally:
        torch.set_num_threads(before)
    return rows


def audit_clean_data(
    c: DemoConfig,
    clean: Dataset,
    split: tuple[np.ndarray, np.ndarray],
    model: nn.Module,
    thresholds: Thresholds,
) -> dict[str, Any]:
    """The clean model on its own clean test images, no annotations, saliency only: what an
    honest user sees. Only discovery's suspected tells can fail it (nothing else is known)."""
    data = clean.subset(split[1][: c.n_eval])
    audit = audit_model(
        model, "clean on clean data", data, {"saliency": {}}, accuracy=float("nan"),
        thresholds=thresholds, checks=AuditSteps(sanity=False, ablation=False), progress=False,
    )  # fmt: skip
    top = audit.suspects[0] if audit.suspects else None
    return {
        "verdict": audit.verdict,
        "conditions": _conditions(audit),
        "top_strong": bool(top.found.strong) if top else False,
        "top_source": top.found.source if top else None,
        "eval_accuracy": audit.eval_accuracy,
    }


# ---------------------------------------------------------------- tables
