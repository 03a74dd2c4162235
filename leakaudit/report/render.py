"""AuditResult → summary dict / JSON / HTML. Reads values, formats them, does no maths.

Outputs are deterministic for a given result: run-dependent timings go to ``run_info.json``,
not into ``report.html`` or ``summary.json``, so the same command gives the same report.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from leakaudit import __version__
from leakaudit.audit import AuditResult, per_class_table
from leakaudit.jsonable import jsonable
from leakaudit.report import pictures

TEMPLATE = "report.html.j2"


def _named(result: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """A behaviour result with class indices (``per_class`` keys, ``worst_class``) as names."""
    out = dict(result)
    if isinstance(out.get("per_class"), dict):
        out["per_class"] = {class_names[int(k)]: v for k, v in out["per_class"].items()}
    if out.get("worst_class") is not None:
        out["worst_class"] = class_names[int(out["worst_class"])]
    return out


def to_summary(result: AuditResult) -> dict[str, Any]:
    """The machine-readable summary (schema documented in README, "summary.json")."""
    models = {}
    for name, audit in result.models.items():
        table = per_class_table(audit.per_sample, result.class_names)
        methods = {}
        for method, means in audit.method_means().items():
            rows = table[(table["method"] == method) & (table["class"] != "all")]
            methods[method] = {
                **means,
                "params": audit.method_params.get(method, {}),
                "per_class": {
                    r["class"]: {
                        "outside_mass": r["outside_mass"],
                        "tell_mass": r["tell_mass"],
                        "tell_top_rate": r["tell_hit"],
                        "n": int(r["n"]),
                    }
                    for _, r in rows.iterrows()
                },
            }
        models[name] = {
            "suspected_tells": [
                {
                    "box": list(x.found.box),
                    "colour": list(x.found.colour),
                    "classes": [result.class_names[k] for k in x.found.classes],
                    "share": x.found.share,
                    "score": x.found.score,
                    "strong": x.found.strong,
                    "source": x.found.source,
                    "removal": _named(x.removal, result.class_names),
                    "swap": x.swap,
                    "iou_with_known_tell": x.iou_with_known,
                }
                for x in audit.suspects
            ],
            "sanity": {
                m: {
                    "passed": r.passed,
                    "final_spearman": r.final_spearman,
                    "reason": r.reason,
                    "layers": [
                        {"layer": st.layer, "spearman": st.spearman, "ssim": st.ssim}
                        for st in r.steps
                    ],
                }
                for m, r in audit.sanity.items()
            },
            "region_ablation": audit.ablation,
            "verdict": audit.verdict,
            "accuracy": audit.accuracy,
            "eval_accuracy": audit.eval_accuracy,
            "methods": methods,
            "behaviour": {k: _named(v, result.class_names) for k, v in audit.behaviour.items()},
            "conditions": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "evidence": c.evidence,
                    "value": c.value,
                    "warn": c.warn,
                    "fail": c.fail,
                    "status": c.status,
                }
                for c in audit.conditions
            ],
        }
    return jsonable(
        {
            "leakaudit_version": __version__,
            "title": result.title,
            "seed": result.seed,
            "class_names": result.class_names,
            "n_eval": len(result.eval_data),
            "tell_area_fraction": result.tell_area_fraction,
            "outside_area_fraction": result.outside_area_fraction,
            "models": models,
            "comparison": result.comparison,
            "thresholds": result.thresholds.as_dict(),
            "config": result.config,
            "data_problems": [
                {"item": p.item, "problem": p.problem, "action": p.action}
                for p in result.eval_data.problems
            ],
        }
    )


def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("leakaudit.reports_templates").joinpath(name).read_text()
    )
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = _fmt
    env.filters["pct"] = lambda v: "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"
    return env


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _gallery(result: AuditResult) -> list[dict[str, Any]]:
    rows = []
    for g, i in enumerate(result.gallery):
        s = result.eval_data[i]
        cells = [{"caption": "image", "uri": pictures.data_uri(
            pictures.panel(s.image, None, s.region, s.tell))}]  # fmt: skip
        preds = {}
        for name, audit in result.models.items():
            row = audit.per_sample[audit.per_sample["id"] == s.id]
            preds[name] = result.class_names[int(row["pred"].iloc[0])] if len(row) else "?"
            for method, maps in audit.gallery_maps.items():
                cells.append({
                    "caption": f"{name} · {method}",
                    "uri": pictures.data_uri(pictures.panel(s.image, maps[g], s.region, s.tell)),
                })  # fmt: skip
        rows.append({"id": s.id, "label": result.class_names[s.label], "preds": preds,
                     "cells": cells})  # fmt: skip
    return rows


def _metrics_rows(result: AuditResult) -> list[dict[str, Any]]:
    """One row per (method, class) with each model's scores side by side."""
    tables = {
        n: per_class_table(a.per_sample, result.class_names) for n, a in result.models.items()
    }
    first = next(iter(tables.values()))
    rows = []
    for _, r in first.iterrows():
        row = {"method": r["method"], "class": r["class"], "n": int(r["n"]), "models": {}}
        for name, t in tables.items():
            hit = t[(t["method"] == r["method"]) & (t["class"] == r["class"])]
            row["models"][name] = hit.iloc[0].to_dict() if len(hit) else {}
        rows.append(row)
    return rows


def render_html(result: AuditResult) -> str:
    summary = to_summary(result)
    template = _environment().get_template(TEMPLATE)
    return template.render(
        r=result,
        s=summary,
        model_names=list(result.models),
        metrics_rows=_metrics_rows(result),
        gallery=_gallery(result),
        config_json=json.dumps(summary["config"], indent=2, sort_keys=True),
    )


def write_report(
    result: AuditResult, out_dir: str | Path, run_info: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write report.html, summary.json and run_info.json (timings) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out / "report.html", out / "summary.json"
    html_path.write_text(render_html(result), encoding="utf-8")
    json_path.write_text(json.dumps(to_summary(result), indent=2, sort_keys=True) + "\n")
    info = {"timings_s": {k: round(v, 2) for k, v in result.timings.items()}, **(run_info or {})}
    (out / "run_info.json").write_text(json.dumps(jsonable(info), indent=2, sort_keys=True) + "\n")
    return html_path, json_path
