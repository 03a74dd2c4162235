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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from leakaudit.data.samples import Dataset, split_indices
from leakaudit.data.synthetic import make_shapes
from leakaudit.demo import DemoConfig, train_model
from leakaudit.discovery import (
    SuspectedTell,
    box_iou,
    discover_tells,
    suspect_boxes,
    suspected_tell_mask,
)
from leakaudit.errors import ConfigError
from leakaudit.jsonable import jsonable
from leakaudit.model_audit import Checks, ModelAudit, audit_model
from leakaudit.models.train import accuracy
from leakaudit.runtime import configure
from leakaudit.tells import CORNERS, TellSpec, poison
from leakaudit.verdict import Thresholds

MIN_DETECTION = 0.9  # "detected" in the summary: caught in at least 90 % of the runs of a cell
DISCOVERY_IOU = 0.3  # a discovered box "finds" the tell when it overlaps it at least this much
MIN_COLOUR_DISTANCE = 0.6  # L1 distance between any two classes' tell colours (as make_shapes)
COVER_SHARE = 0.5  # a suspect's box "covers" a tell when it holds at least half its pixels


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


@dataclass
class PowerRun:
    """What one (seed, size, prevalence) run measured. ``conditions`` maps "clean"/"poisoned"
    to rows {name, kind, value, status}; accuracies are on each model's own test set."""

    seed: int
    size: int
    prevalence: float
    position: str | tuple[int, int]
    colours: dict[int, tuple[float, float, float]]
    verdicts: dict[str, str]
    conditions: dict[str, list[dict[str, Any]]]
    clean_accuracy: float
    poisoned_accuracy: float
    poisoned_accuracy_on_clean: float  # the poisoned model on clean test images: its reliance
    eval_accuracy: dict[str, float]
    discovery: dict[str, Any]
    seconds: float
    kind: str = "solid"
    # per model: the top suspect's coverage of the tells, and whether the suspected-tell
    # conditions alone (no annotations used) fail it
    blind: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def detected(self) -> bool:
        return self.verdicts["poisoned"] == "leak"

    @property
    def blind_detected(self) -> bool | None:
        return self.blind.get("poisoned", {}).get("leak")

    @property
    def false_alarm(self) -> bool:
        return self.verdicts["clean"] == "leak"

    def warned(self, model: str) -> bool:
        """Any condition at WARN: not a verdict, but worth a look (the report shows it)."""
        return any(c["status"] == "WARN" for c in self.conditions[model])

    def condition_values(self, model: str) -> dict[str, float]:
        return {c["name"]: c["value"] for c in self.conditions[model]}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["position"] = list(self.position) if isinstance(self.position, tuple) else self.position
        d["colours"] = {str(k): [round(c, 3) for c in v] for k, v in self.colours.items()}
        return jsonable(d)


def _conditions(audit: ModelAudit) -> list[dict[str, Any]]:
    """Name (without the reason it was set aside, which its ``status`` N/A reflects), kind,
    value and status of each condition."""
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "value": float(c.value),
            "status": c.status,
            "fail": float(c.fail),
        }
        for c in audit.conditions
    ]


def _discovery(audit: ModelAudit, data: Dataset, method: str, true_box, seed: int) -> dict:
    """Run annotation-free discovery on one method's maps; is the top suspect the true tell?"""
    if method not in audit.gallery_maps or not len(data):
        return {"hit": None, "iou": None, "top_strong": None, "n_strong": None}
    preds = audit.per_sample.loc[audit.per_sample["method"] == method, "pred"].to_numpy()
    res = discover_tells(
        audit.gallery_maps[method],
        data.images(),
        data.labels(),
        predictions=preds,
        regions=[s.region if s.region.any() else None for s in data],
        seed=seed,
    )
    if not res.suspects:
        return {"hit": False, "iou": 0.0, "top_strong": False, "n_strong": 0}
    top = res.suspects[0]
    iou = box_iou(top.box, true_box)
    return {
        "hit": bool(iou >= DISCOVERY_IOU),
        "iou": float(iou),
        "top_strong": bool(top.strong),
        "top_box": [int(v) for v in top.box],
        "n_strong": len(res.strong),
    }


def suspect_coverage(suspect: SuspectedTell | None, data: Dataset) -> float:
    """Share of ``data``'s tell-bearing images whose tell the suspect's box *in that image*
    covers by ≥ ``COVER_SHARE`` of its pixels (no IoU: a box around a logo or text is fine)."""
    tells = [(i, s.tell) for i, s in enumerate(data) if s.tell is not None and s.tell.any()]
    if not tells:
        return float("nan")
    if suspect is None:
        return 0.0
    boxes = suspect_boxes(suspect, len(data))
    hits = []
    for i, t in tells:
        b = boxes[i]
        hits.append(
            b is not None and t[suspected_tell_mask(b, t.shape)].sum() >= COVER_SHARE * t.sum()
        )
    return float(np.mean(hits))


def _blind(audit: ModelAudit, data: Dataset) -> dict[str, Any]:
    """What the audit says from discovery alone: the suspected-tell conditions (which never see
    the annotations) and how well its top suspect covers the real tells."""
    conds = [c for c in audit.conditions if c.name.startswith("suspected")]
    top = audit.suspects[0].found if audit.suspects else None
    return {
        "leak": any(c.status == "FAIL" for c in conds),
        "coverage": suspect_coverage(top, data),
        "top_source": top.source if top is not None else None,
        "top_strong": bool(top.strong) if top is not None else False,
    }


def _methods(c: DemoConfig, lime: bool) -> dict[str, dict[str, Any]]:
    """The demo's methods and settings (saliency, and LIME unless switched off)."""
    methods: dict[str, dict[str, Any]] = {"saliency": {}}
    if lime:
        methods["lime"] = {
            "n_samples": c.lime_samples,
            "n_segments": c.lime_segments,
            "baseline": c.lime_baseline,
            "seed": c.seed + 4,
        }
    return methods


def _run_cell(
    c: DemoConfig,
    clean: Dataset,
    split: tuple[np.ndarray, np.ndarray],
    clean_model: nn.Module,
    clean_acc: float,
    style: TellStyle,
    thresholds: Thresholds,
    lime: bool,
    checks: Checks | None,
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
    methods = _methods(c, lime)
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


@dataclass
class PowerResult:
    """All runs of a sweep plus what it was run with; aggregates are computed from ``runs``."""

    runs: list[PowerRun]
    sizes: list[int]
    prevalences: list[float]
    seeds: list[int]
    config: dict[str, Any]
    thresholds: Thresholds
    styles: dict[int, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=lambda: ["solid"])
    clean_audits: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed → on clean data

    def runs_table(self) -> pd.DataFrame:
        """One row per run: verdicts, accuracies, discovery and every condition's value."""
        rows = []
        for r in self.runs:
            row: dict[str, Any] = {
                "seed": r.seed,
                "kind": r.kind,
                "size": r.size,
                "prevalence": r.prevalence,
                "position": str(r.position),
                "clean_verdict": r.verdicts["clean"],
                "poisoned_verdict": r.verdicts["poisoned"],
                "clean_accuracy": r.clean_accuracy,
                "poisoned_accuracy": r.poisoned_accuracy,
                "poisoned_accuracy_on_clean": r.poisoned_accuracy_on_clean,
                "discovery_hit": r.discovery.get("poisoned_saliency", {}).get("hit"),
                "discovery_iou": r.discovery.get("poisoned_saliency", {}).get("iou"),
                "blind_detected": r.blind_detected,
                "coverage": r.blind.get("poisoned", {}).get("coverage"),
                "clean_blind_leak": r.blind.get("clean", {}).get("leak"),
                "seconds": r.seconds,
            }
            for model in ("clean", "poisoned"):
                for name, v in r.condition_values(model).items():
                    row[f"{model}: {name}"] = v
            rows.append(row)
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        """One row per (kind, size, prevalence) cell: detection, false-alarm and discovery rates."""
        rows = []
        kinds = list(dict.fromkeys(r.kind for r in self.runs))
        cells = [(k, z, p) for k in kinds for z in self.sizes for p in self.prevalences]
        for kind, size, prev in cells:
            cell = [
                r for r in self.runs if r.kind == kind and r.size == size and r.prevalence == prev
            ]
            if not cell:
                continue
            cover = [r.blind.get("poisoned", {}).get("coverage") for r in cell]
            cover = [v for v in cover if v is not None and np.isfinite(v)]
            rows.append({
                "kind": kind,
                "size": size,
                "prevalence": prev,
                "runs": len(cell),
                "detection_rate": _rate([r.detected for r in cell]),
                "false_alarm_rate": _rate([r.false_alarm for r in cell]),
                "missed_but_warned_rate": _rate(
                    [not r.detected and r.warned("poisoned") for r in cell]
                ),
                "clean_warned_rate": _rate(
                    [not r.false_alarm and r.warned("clean") for r in cell]
                ),
                "discovery_hit_rate": _rate(
                    [r.discovery.get("poisoned_saliency", {}).get("hit") for r in cell]
                ),
                "discovery_hit_rate_lime": _rate(
                    [r.discovery.get("poisoned_lime", {}).get("hit") for r in cell]
                ),
                "clean_strong_suspect_rate": _rate(
                    [r.discovery.get("clean_saliency", {}).get("top_strong") for r in cell]
                ),
                "blind_detection_rate": _rate([r.blind_detected for r in cell]),
                "covered_rate": _rate([v >= 0.8 for v in cover]) if cover else float("nan"),
                "mean_coverage": float(np.mean(cover)) if cover else float("nan"),
                "clean_blind_flagged": _rate(
                    [r.blind.get("clean", {}).get("leak") for r in cell]
                ),
                "clean_accuracy": float(np.mean([r.clean_accuracy for r in cell])),
                "poisoned_accuracy": float(np.mean([r.poisoned_accuracy for r in cell])),
                "poisoned_accuracy_on_clean": float(
                    np.mean([r.poisoned_accuracy_on_clean for r in cell])
                ),
            })  # fmt: skip
        return pd.DataFrame(rows)

    def smallest_detected(self, min_rate: float = MIN_DETECTION) -> dict[float, int | None]:
        """Per prevalence, the smallest tell size whose detection rate is ≥ ``min_rate`` (None:
        no size reached it)."""
        t = self.table()
        out: dict[float, int | None] = {}
        for prev in self.prevalences:
            ok = t[(t["prevalence"] == prev) & (t["detection_rate"] >= min_rate)]
            out[prev] = int(ok["size"].min()) if len(ok) else None
        return out

    def false_alarms(self) -> dict[str, Any]:
        """Clean-model false alarms over all audits, and which runs they were."""
        hits = [r for r in self.runs if r.false_alarm]
        on_clean = [a["verdict"] == "leak" for a in self.clean_audits.values()]
        return {
            "clean_data_audits": len(on_clean),
            "clean_data_false_alarms": int(sum(on_clean)),
            "audits": len(self.runs),
            "false_alarms": len(hits),
            "rate": _rate([r.false_alarm for r in self.runs]),
            "clean_models": len(self.seeds),  # one per seed, audited once per cell
            "clean_models_flagged": len({r.seed for r in hits}),
            "runs": [{"seed": r.seed, "size": r.size, "prevalence": r.prevalence} for r in hits],
        }

    def to_json(self) -> dict[str, Any]:
        return jsonable({
            "sizes": self.sizes,
            "prevalences": self.prevalences,
            "seeds": self.seeds,
            "config": self.config,
            "thresholds": self.thresholds.as_dict(),
            "min_detection_rate": MIN_DETECTION,
            "discovery_iou": DISCOVERY_IOU,
            "styles": {str(k): v for k, v in self.styles.items()},
            "kinds": self.kinds,
            "cover_share": COVER_SHARE,
            "clean_audits": {str(k): v for k, v in self.clean_audits.items()},
            "cells": self.table().to_dict(orient="records"),
            "smallest_detected_size": {str(k): v for k, v in self.smallest_detected().items()},
            "false_alarms": self.false_alarms(),
            "calibration": calibration_table(self).to_dict(orient="records"),
            "runs": [r.to_json() for r in self.runs],
            "seconds": self.seconds,
        })  # fmt: skip


def _rate(flags: Sequence[bool | None]) -> float:
    """Share of True among the defined flags (NaN if none is defined)."""
    known = [bool(f) for f in flags if f is not None]
    return float(np.mean(known)) if known else float("nan")


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
    checks: Checks | None = None,
    threads: int | None = None,
    kinds: Sequence[str] = ("solid",),
    random_place: bool = False,
    jpeg_quality: int | None = None,
    clean_data_audit: bool = False,
    on_run: Callable[[str, dict[str, Any]], None] | None = None,
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
    "clean"), so a long sweep on a busy machine leaves its results as it goes."""
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
        style = draw_style(c.seed, c.n_classes)
        styles[c.seed] = style.describe()
        bar.set_postfix(seed=seed, step="clean")
        t0 = time.perf_counter()
        clean = make_shapes(c.n_images, seed=c.seed, size=c.size, n_classes=c.n_classes)
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
    cfg.update({k: v for k, v in extra.items() if k not in ("kinds", "on_run")})
    return PowerResult(
        runs, sizes, prevalences, seeds, cfg, thresholds, styles, seconds, kinds, clean_audits
    )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a rate (Wilson 1927): 0 of 20 is not "0 %", it is
    "at most ~16 %"."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - spread)), float(min(1.0, centre + spread))


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
        thresholds=thresholds, checks=Checks(sanity=False, ablation=False), progress=False,
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


def calibration_table(result: PowerResult) -> pd.DataFrame:
    """Per condition: min / median / max over clean and over poisoned audits, next to warn/fail.

    ``clean_fail`` counts clean audits at or over the fail line (false alarms from this
    condition); ``poisoned_pass`` counts poisoned audits under the warn line (this condition
    alone would have missed them)."""
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in result.runs:
        for model in ("clean", "poisoned"):
            for cond in r.conditions[model]:
                key = (cond["name"], cond["kind"])
                values.setdefault(key, {"clean": [], "poisoned": []})[model].append(cond["value"])
    th = result.thresholds
    rows = []
    for (name, kind), v in values.items():
        warn, fail = getattr(th, kind)
        row: dict[str, Any] = {"condition": name, "kind": kind}
        for model in ("clean", "poisoned"):
            arr = np.asarray(v[model], dtype=float)
            arr = arr[np.isfinite(arr)]
            for stat, fn in (("min", np.min), ("median", np.median), ("max", np.max)):
                row[f"{model}_{stat}"] = float(fn(arr)) if len(arr) else float("nan")
        row["warn"], row["fail"] = warn, fail
        clean_v = np.asarray(v["clean"], float)
        pois_v = np.asarray(v["poisoned"], float)
        row["clean_fail"] = int((clean_v >= fail).sum())
        row["poisoned_pass"] = int((pois_v < warn).sum())
        row["n_clean"] = int(np.isfinite(clean_v).sum())
        row["n_poisoned"] = int(np.isfinite(pois_v).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(df: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """A pipe table that reads in a terminal and renders in a README (no tabulate dependency)."""
    formats = formats or {}

    def cell(col: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "–"
        if col in formats:
            return format(v, formats[col])
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v)

    cols = list(df.columns)
    text = {c for c in cols if any(isinstance(v, str) for v in df[c])}
    body = [[cell(c, v) for c, v in zip(cols, row, strict=True)] for row in df.itertuples(False)]
    widths = [
        max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(cols)
    ]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        cells = [
            x.ljust(w) if c in text else x.rjust(w) for x, w, c in zip(b, widths, cols, strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_calibration_table(result: PowerResult) -> str:
    t = calibration_table(result)
    t = t[["condition", "clean_min", "clean_median", "clean_max", "poisoned_min",
           "poisoned_median", "poisoned_max", "warn", "fail", "clean_fail", "poisoned_pass",
           "n_clean", "n_poisoned"]]  # fmt: skip
    t = t.rename(columns={"clean_fail": "clean≥fail", "poisoned_pass": "poisoned<warn"})
    return _markdown(t)


def format_power_table(result: PowerResult, calibration: bool = True) -> str:
    """Plain-text summary for the terminal and README: per-cell rates, the smallest detected
    size per prevalence, false alarms and (optionally) the calibration table."""
    t = result.table()
    cols = {
        "kind": "kind",
        "size": "size",
        "prevalence": "prevalence",
        "runs": "runs",
        "detection_rate": "detected",
        "false_alarm_rate": "clean flagged",
        "missed_but_warned_rate": "missed, warned",
        "clean_warned_rate": "clean warned",
        "discovery_hit_rate": "discovery hit (saliency)",
        "discovery_hit_rate_lime": "discovery hit (LIME)",
        "blind_detection_rate": "detected w/o annotations",
        "covered_rate": "suspect covers ≥ 80 % of tells",
        "mean_coverage": "mean coverage",
        "clean_blind_flagged": "clean flagged w/o annotations",
        "clean_accuracy": "clean acc",
        "poisoned_accuracy": "poisoned acc",
        "poisoned_accuracy_on_clean": "poisoned acc, no tell",
    }
    t = t[[c for c in cols if c in t.columns]].rename(columns=cols)
    smallest = result.smallest_detected()
    fa = result.false_alarms()
    n_seeds = len(result.seeds)
    lines = [
        f"Detection power: {len(result.runs)} runs ({n_seeds} seed(s) × {len(result.sizes)} "
        f"size(s) × {len(result.prevalences)} prevalence(s)); random tell colours and positions "
        "per seed; image "
        f"{result.config.get('size')}×{result.config.get('size')} px.",
        "",
        _markdown(t, {"prevalence": "g"}),
        "",
        f"Smallest tell size detected in ≥ {MIN_DETECTION:.0%} of runs: "
        + ", ".join(
            f"prevalence {p:g}: {'none' if s is None else f'{s} px'}" for p, s in smallest.items()
        ),
        f"Clean models audited on clean images without annotations: "
        f"{fa['clean_data_false_alarms']} of {fa['clean_data_audits']} flagged.",
        f"Clean-model false alarms: {fa['false_alarms']} of {fa['audits']} audits"
        + (
            " ("
            + "; ".join(
                f"seed {x['seed']} size {x['size']} prev {x['prevalence']:g}" for x in fa["runs"]
            )
            + ")"
            if fa["runs"]
            else ""
        )
        + ".",
    ]
    if calibration:
        lines += [
            "",
            "Condition values over clean and poisoned audits vs thresholds:",
            "",
            format_calibration_table(result),
        ]
    return "\n".join(lines)
