"""AuditResult → summary dict / JSON / HTML / markdown / JUnit. Reads values, formats them.

Outputs are deterministic for a given result: run-dependent timings go to ``run_info.json``,
not into ``report.html``, ``summary.md`` or ``summary.json``, so the same command gives the same
report. Every output is rendered from the *saved* results (summary.json + results.npz), read
back from disk, so ``leakaudit report`` later reproduces them byte for byte.
"""

from __future__ import annotations

import io
import json
import math
import re
from importlib import resources
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.conditions import CONDITIONS
from leakaudit.evidence import metrics
from leakaudit.report import pictures, plots
from leakaudit.report.bundle import load_bundle, save_bundle
from leakaudit.report.numbers import (
    fmt,
    fmt_ci,
    key_numbers,
    key_scores,
    method_order,
    model_order,
)
from leakaudit.report.report_data import ReportData
from leakaudit.report.summary import summary_text, to_summary
from leakaudit.textsafe import html_text

TEMPLATE = "report.html.j2"
MAX_PROBLEM_ROWS = 200  # data-problem rows in the HTML; all of them are in summary.json
MAX_PLOT_CLASSES = 20


# ---------------------------------------------------------------- HTML view


def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("leakaudit.reports_templates").joinpath(name).read_text()
    )
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                             finalize=_visible)  # fmt: skip
    env.filters["num"] = fmt
    env.filters["ci"] = fmt_ci
    env.filters["pct"] = lambda v: "–" if v is None or not math.isfinite(v) else f"{100 * v:.1f} %"
    return env


def _visible(value: Any) -> Any:
    """Data text in the page with control characters as escapes (autoescape does the rest)."""
    return html_text(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def _metrics_rows(s: dict[str, Any], models: list[str], methods: list[str]) -> list[dict]:
    """One row per (method, class) with each model's scores side by side, then an 'all' row."""
    rows = []
    for method in methods:
        for cls in [*s["class_names"], "all"]:
            row: dict[str, Any] = {"method": method, "class": cls, "n": None, "models": {}}
            for name in models:
                m = s["models"][name]["methods"].get(method)
                if m is None:
                    continue
                v = m if cls == "all" else m["per_class"].get(cls)
                if v is None:
                    continue
                row["n"] = v["n"]
                row["models"][name] = {m.name: v.get(m.key) for m in metrics.audited()}
            if row["n"] is not None:
                rows.append(row)
    return rows


def _thumb(data: ReportData, t: int) -> np.ndarray:
    return data.thumbs[t].astype(np.float32) / 255


def _plain_uri(data: ReportData, t: int) -> str:
    pic = _thumb(data, t)
    pic = pictures.outline(pic, data.thumb_regions[t], pictures.REGION_COLOUR, 1)
    return pictures.data_uri(pictures.outline(pic, data.thumb_tells[t], pictures.TELL_COLOUR, 1))


def _heat_uri(data: ReportData, model: str, method: str, t: int) -> str | None:
    maps = data.panel_maps.get(model, {}).get(method)
    if maps is None or t >= len(maps) or not np.isfinite(maps[t].astype(np.float32)).any():
        return None
    pic = pictures.panel(
        _thumb(data, t),
        maps[t].astype(np.float32),
        data.thumb_regions[t],
        data.thumb_tells[t],
        factor=1,
    )
    return pictures.data_uri(pic)


def _prediction(s, data: ReportData, model: str, index: int) -> dict[str, Any]:
    pred, label = int(data.images[model]["pred"][index]), int(data.labels[index])
    conf = float(data.images[model]["confidence"][index])
    return {
        "model": model,
        "pred": s["class_names"][pred] if pred >= 0 else "?",
        "right": pred == label,
        "confidence": conf if math.isfinite(conf) else None,
    }


GALLERY_TITLES = {
    "worst": "Worst offenders · {model}",
    "misclassified": "Misclassified · {model}",
    "typical": "A typical image per class",
}


def _galleries(s: dict[str, Any], data: ReportData) -> list[dict[str, Any]]:
    """Panels of the saved gallery choices: picture layers, prediction, confidence."""
    out = []
    uris: dict[int, str] = {}
    for g in data.meta.get("galleries", []):
        models = [g["model"]] if g["model"] else model_order(s, data)
        panels = []
        for item in g["items"]:
            i, t = item["index"], data.thumb_of(item["index"])
            if t is None:
                continue
            if i not in uris:
                uris[i] = _plain_uri(data, t)
            layers = [
                {
                    "caption": f"{m} · {method}" if len(models) > 1 else method,
                    "heat": _heat_uri(data, m, method, t),
                }
                for m in models
                for method in method_order(s, data, m)
            ]
            preds = [_prediction(s, data, m, i) for m in models]
            panels.append(
                {
                    "id": str(data.ids[i]),
                    "label": s["class_names"][int(data.labels[i])],
                    "plain": uris[i],
                    "layers": layers,
                    "preds": preds,
                    "right": all(p["right"] for p in preds),
                    "value": item["value"],
                }
            )
        out.append(
            {
                "kind": g["kind"],
                "title": GALLERY_TITLES[g["kind"]].format(model=model_label(g["model"])),
                "score": g["score"],
                "panels": panels,
                "model": g["model"],
            }
        )
    return out


def _distribution_plots(s: dict[str, Any], data: ReportData) -> list[Markup]:
    """Per method: per-class boxes of outside-object share, models side by side."""
    models = model_order(s, data)
    classes = s["class_names"][:MAX_PLOT_CLASSES]
    out = []
    for method in data.methods:
        series = {}
        for m in models:
            rows = data.method_rows(m, method)
            if rows and np.isfinite(rows["outside_mass"]).any():
                series[m] = [rows["outside_mass"][rows["label"] == k] for k in range(len(classes))]
        if series:
            out.append(
                plots.class_distribution_svg(
                    classes,
                    series,
                    f"{method}: share of attribution outside the object, per class",
                    chance=s.get("outside_area_fraction"),
                )
            )
    return out


HOTSPOT_CHUNK = 1024  # maps normalised at a time: 10 000 at once took ~0.65 GB a method


def class_mean_maps(
    maps: np.ndarray, labels: np.ndarray, n_classes: int
) -> list[np.ndarray | None]:
    """Per class, the mean of its explained images' maps, each clipped at 0 and divided by its
    peak (None for a class without one). A chunk of maps at a time, summed in float64, so the
    memory does not grow with the number of images."""
    h, w = maps.shape[1:3]
    sums = np.zeros((n_classes, h, w), np.float64)
    counts = np.zeros(n_classes, np.int64)
    for start in range(0, len(maps), HOTSPOT_CHUNK):
        part = maps[start : start + HOTSPOT_CHUNK].astype(np.float32)
        explained = np.isfinite(part).all(axis=(1, 2))  # rows a budgeted method skipped: NaN
        pos = np.clip(np.nan_to_num(part), 0, None)
        peak = pos.reshape(len(pos), -1).max(axis=1)
        norm = pos / np.where(peak > 0, peak, 1)[:, None, None]
        lab = labels[start : start + HOTSPOT_CHUNK]
        for k in range(n_classes):
            sel = (lab == k) & explained
            if sel.any():
                sums[k] += norm[sel].sum(axis=0, dtype=np.float64)
                counts[k] += int(sel.sum())
    return [(sums[k] / counts[k]).astype(np.float32) if counts[k] else None
            for k in range(n_classes)]  # fmt: skip


def _hotspots(s: dict[str, Any], data: ReportData) -> list[dict[str, Any]]:
    """Per model and method, the mean positive-normalised map of each class (saved maps)."""
    rows = []
    classes = s["class_names"][:MAX_PLOT_CLASSES]
    for m in model_order(s, data):
        for method in data.methods:
            maps = data.maps.get(m, {}).get(method)
            info = data.method_rows(m, method)
            if maps is None or not info or len(maps) != len(info["label"]):
                continue
            means = class_mean_maps(maps, np.asarray(info["label"]), len(classes))
            cells = []
            for cls, mean in zip(classes, means, strict=True):
                if mean is None:
                    cells.append({"class": cls, "uri": None})
                    continue
                top = mean.max()
                cells.append(
                    {
                        "class": cls,
                        "uri": pictures.data_uri(pictures.heat(mean / top if top > 0 else mean)),
                    }
                )
            rows.append({"model": m, "method": method, "cells": cells})
    return rows


CLASS_PICTURE_SIDE = 96  # displayed size of a class visualisation in the report


def _class_pictures(s: dict[str, Any], data: ReportData) -> dict[str, dict[str, Any]]:
    """Per model (``--insight``): each class's visualisation with the boxes of the strong
    suspects that name that class outlined, and the link to the model's insight page."""
    out = {}
    pages = data.meta.get("insight_pages", {})
    image_h = (data.meta.get("image_shape") or [0])[0]
    for m in model_order(s, data):
        pics = data.class_pictures.get(m)
        if pics is None:
            continue
        strong = [(i, x) for i, x in enumerate(s["models"][m].get("suspected_tells") or [], 1)
                  if x.get("strong")]  # fmt: skip
        h = pics.shape[1]
        factor = max(1, CLASS_PICTURE_SIDE // max(pics.shape[1:3]))
        scale = h / image_h if image_h else 1.0
        cells = []
        for k, cls in enumerate(s["class_names"][: len(pics)]):
            img = pictures.upscale(pics[k].astype(np.float64) / 255.0, factor)
            marked = []
            for i, x in strong:
                if cls not in x.get("classes", []):
                    continue
                mask = np.zeros(pics.shape[1:3], bool)
                x0, y0, x1, y1 = (int(round(v * scale)) for v in x["box"])
                mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
                img = pictures.outline(img, mask, (1.0, 1.0, 1.0), factor)
                marked.append(i)
            cells.append({"class": cls, "uri": pictures.data_uri(img), "suspects": marked})
        page = pages.get(m)  # saved results may come from elsewhere: link only our own names
        ok = isinstance(page, str) and re.fullmatch(r"insight_\d+_[A-Za-z0-9_-]+\.html", page)
        out[m] = {"cells": cells, "page": page if ok else None}
    return out


def _sanity_plots(s: dict[str, Any], data: ReportData) -> list[Markup]:
    out = []
    for m in model_order(s, data):
        sanity = s["models"][m]["sanity"]
        methods = [x for x in method_order(s, data, m) if x in sanity] or list(sanity)
        if not methods or not sanity[methods[0]]["layers"]:
            continue
        steps = [st["layer"] for st in sanity[methods[0]]["layers"]]
        series = {x: [st["spearman"] for st in sanity[x]["layers"]] for x in methods}
        out.append(
            plots.curves_svg(
                steps,
                series,
                f"{m} model: Spearman similarity to the original maps after randomising each block",
                0.5,
            )
        )
    return out


def render_html_from(s: dict[str, Any], data: ReportData) -> str:
    """report.html from the saved summary and results (what ``leakaudit report`` calls)."""
    models = model_order(s, data)
    first = models[0] if models else None
    methods = method_order(s, data, first) if first else []
    problems = s.get("data_problems") or []
    template = _environment().get_template(TEMPLATE)
    return template.render(
        s=s,
        model_names=models,
        methods=methods,
        params={m: s["models"][first]["methods"][m].get("params", {}) for m in methods},
        key=key_numbers(s, data),
        key_scores=key_scores(),
        metric_columns=[(m.name, m.heading, m.digits) for m in metrics.audited()],
        condition_legend=[
            (" / ".join(c.name.replace("{method}: ", "") for c in spec.checks), spec.measured)
            for spec in CONDITIONS.values()
        ],
        metrics_rows=_metrics_rows(s, models, methods),
        galleries=_galleries(s, data),
        distributions=_distribution_plots(s, data),
        hotspots=_hotspots(s, data),
        class_pictures=_class_pictures(s, data),
        sanity_plots=_sanity_plots(s, data),
        problems=problems[:MAX_PROBLEM_ROWS],
        n_problems=len(problems),
        notes=data.meta.get("notes", []),
        repro=data.meta.get("reproducibility") or {},
        config_json=json.dumps(s.get("config"), indent=2, sort_keys=True),
        saved=bool(data.meta),
    )


def render_html(result: AuditResult, command: str | None = None) -> str:
    """report.html text for an in-memory result, through the same save → load path."""
    from leakaudit.report.collect import collect

    summary = to_summary(result)
    s = json.loads(summary_text(summary))
    buf = io.BytesIO()
    save_bundle(collect(result, summary, command), buf)
    buf.seek(0)
    return render_html_from(s, load_bundle(buf))


def model_label(name: str | None) -> str:
    """ "clean model", "poisoned model" — but a single audit's model is just "model"."""
    return "model" if name in (None, "model") else f"{name} model"
