"""A power sweep's runs and what is read from them: rates per cell, the calibration table
(where each condition's values fall for clean and poisoned models, next to its lines) and the
files ``leakaudit power`` writes. Pure bookkeeping: the sweep itself is ``power.py``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leakaudit.auditing.verdict import Thresholds
from leakaudit.evidence.stats import wilson_interval  # noqa: F401 (importable from here)
from leakaudit.jsonable import jsonable

MIN_DETECTION = 0.9  # "detected" in the summary: caught in at least 90 % of the runs of a cell
DISCOVERY_IOU = 0.3  # a discovered box "finds" the tell when it overlaps it at least this much
COVER_SHARE = 0.5  # a suspect's box "covers" a tell when it holds at least half its pixels
COVERED_RUN = 0.8  # a run's tells count as found when the suspect covers this share (issue 13)


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
                "coverage_strong": r.blind.get("poisoned", {}).get("coverage_strong"),
                "relied_classes": r.blind.get("poisoned", {}).get("relied_classes"),
                "coverage_relied": r.blind.get("poisoned", {}).get("coverage_relied"),
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
            cover = _poisoned_values(cell, "coverage")
            strong = _poisoned_values(cell, "coverage_strong")
            relied = _poisoned_values(cell, "coverage_relied")
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
                "covered_rate": _rate([v >= COVERED_RUN for v in cover]),
                "mean_coverage": float(np.mean(cover)) if cover else float("nan"),
                "covered_rate_strong": _rate([v >= COVERED_RUN for v in strong]),
                # runs where some class relies on its tell; the rate is over those runs
                "covered_rate_relied": _rate([v >= COVERED_RUN for v in relied]),
                "runs_relied": len(relied),
                "blind_detection_rate_relied": _rate([
                    r.blind_detected for r in cell
                    if r.blind.get("poisoned", {}).get("relied_classes")
                ]),
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


def _poisoned_values(cell: Sequence[PowerRun], key: str) -> list[float]:
    """The poisoned model's annotation-free ``key`` per run, where it is defined (not NaN)."""
    values = [r.blind.get("poisoned", {}).get(key) for r in cell]
    return [v for v in values if v is not None and np.isfinite(v)]


def _rate(flags: Sequence[bool | None]) -> float:
    """Share of True among the defined flags (NaN if none is defined)."""
    known = [bool(f) for f in flags if f is not None]
    return float(np.mean(known)) if known else float("nan")


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
        warn, fail = th[kind]
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
        "covered_rate_strong": "strong suspects together cover ≥ 80 %",
        "covered_rate_relied": "suspect covers ≥ 80 % of relied-on tells",
        "runs_relied": "runs with a relied-on tell",
        "blind_detection_rate_relied": "detected w/o annotations, runs with a relied-on tell",
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


def write_power(result: PowerResult, out: str | Path) -> str:
    """power.md (the tables), power.json (every run) and power.svg (the heat map) into ``out``;
    returns the tables' text."""
    from leakaudit.paths import OutputSet
    from leakaudit.report.plots import power_heatmap_svg

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    text = format_power_table(result)
    cells = result.table().to_dict(orient="records")
    with OutputSet(d) as outs:  # the three together or none, never through a link
        outs.write(d / "power.md", text + "\n")
        outs.write(d / "power.json", json.dumps(result.to_json(), indent=2))
        outs.write(d / "power.svg", power_heatmap_svg(cells) + "\n")
    return text
