"""Key numbers with 95 % bootstrap intervals, shared by report.html and summary.md.

Read from the saved per-sample scores so the original report and a re-render agree; seeded with
the audit's seed so the same results give the same intervals.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from leakaudit.evidence import metrics
from leakaudit.evidence.stats import bootstrap_ci
from leakaudit.report.bundle import ReportData


def key_scores() -> list[tuple[str, str]]:
    """(per-sample column, heading) of every audited metric (``metrics.py``), in registry order."""
    return [(m.name, m.heading) for m in metrics.audited()]


def _ci(values: np.ndarray, seed: int) -> dict[str, Any]:
    iv = bootstrap_ci(values, seed=seed)
    return {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n}


def key_numbers(s: dict[str, Any], data: ReportData) -> dict[str, dict[str, Any]]:
    """Per model: evaluation accuracy and, per method, the key scores, each with a CI.

    Without saved per-sample scores (older results) only the point values from the summary
    are given, with no interval rather than a made-up one."""
    seed = int(s.get("seed") or 0)
    columns = [(m.name, m.key) for m in metrics.audited()]
    out: dict[str, dict[str, Any]] = {}
    for model in model_order(s, data):
        m = s["models"][model]
        methods = method_order(s, data, model)
        entry: dict[str, Any] = {
            "accuracy": {
                "mean": m.get("eval_accuracy"),
                "lo": None,
                "hi": None,
                "n": s.get("n_eval"),
            },
            "methods": {},
        }
        preds = data.images.get(model, {}).get("pred")
        if preds is not None and (preds >= 0).any():
            right = np.where(preds >= 0, (preds == data.labels).astype(float), np.nan)
            entry["accuracy"] = _ci(right, seed)
        for method in methods:
            rows = data.method_rows(model, method)
            means = m["methods"][method]
            entry["methods"][method] = {
                col: _ci(rows[col], seed)
                if col in rows
                else {
                    "mean": means.get(key),
                    "lo": None,
                    "hi": None,
                    "n": means.get("n"),
                }
                for col, key in columns
            }
        out[model] = entry
    return out


def model_order(s: dict[str, Any], data: ReportData) -> list[str]:
    """Models in the order the audit gave them (saved); summary order for older results."""
    names = [n for n in data.model_names if n in s["models"]]
    return names or list(s["models"])


def method_order(s: dict[str, Any], data: ReportData, model: str) -> list[str]:
    names = [m for m in data.methods if m in s["models"][model]["methods"]]
    return names or list(s["models"][model]["methods"])


def fmt(value: Any, digits: int = 3) -> str:
    """A number for people: fixed digits, '–' for undefined (never a made-up value)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}" if math.isfinite(value) else "–"
    return str(value)


def fmt_ci(ci: dict[str, Any], digits: int = 3) -> str:
    text = fmt(ci.get("mean"), digits)
    if ci.get("lo") is not None and ci.get("hi") is not None and text != "–":
        text += f" [{fmt(ci['lo'], digits)}, {fmt(ci['hi'], digits)}]"
    return text
