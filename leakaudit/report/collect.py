"""AuditResult → ReportData: the arrays and facts a report needs, chosen once and saved.

Gallery choices are made here from the per-sample scores (and the compact maps, when the audit
kept them), so the saved results hold thumbnails for exactly the images the report shows.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import warnings
from importlib import metadata
from typing import Any

import numpy as np

from leakaudit import __version__
from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.model_audit import ModelAudit, score_columns
from leakaudit.data.spill import SpilledStack
from leakaudit.report.bundle import (
    ReportData,
    resize_map,
    resize_mask,
    sha256_file,
    thumbnail,
)

MAX_PANELS = 8  # per gallery and model: the report stays small whatever the audit's size
MAX_TYPICAL_CLASSES = 20


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _row_indices(audit: ModelAudit, method: str, rows, ids: dict[str, int]) -> np.ndarray:
    """Evaluation-data index of each per-sample row of one method: all images in data order,
    or the budgeted sample the audit records in ``covered``; by id as a last resort."""
    covered = (getattr(audit, "covered", None) or {}).get(method)
    if covered is not None and len(covered) == len(rows):
        return np.asarray(covered, dtype=np.int64)
    if len(rows) == len(ids):
        return np.arange(len(rows))
    return np.array([ids.get(str(x), -1) for x in rows["id"]], dtype=np.int64)


def _per_sample(data: ReportData, name: str, audit: ModelAudit, n: int, ids: dict[str, int]):
    """Per-image arrays of one model (data order) from its per-sample table."""
    ps = audit.per_sample
    images = {
        "pred": np.full(n, -1, np.int64),
        "confidence": np.full(n, np.nan),
        "p_true": np.full(n, np.nan),
    }
    scores: dict[str, dict[str, np.ndarray]] = {}
    for method in data.methods:
        rows = ps[ps["method"] == method]
        if not len(rows):
            continue
        idx = _row_indices(audit, method, rows, ids)
        ok = idx >= 0
        images["pred"][idx[ok]] = rows["pred"].to_numpy(np.int64)[ok]
        for col in ("confidence", "p_true"):  # newer audits only; NaN before
            if col in rows:
                images[col][idx[ok]] = rows[col].to_numpy(np.float64)[ok]
        scores[method] = {}
        for col in (c for c in score_columns() if c in rows):
            v = np.full(n, np.nan)
            v[idx[ok]] = rows[col].to_numpy(np.float64)[ok]
            scores[method][col] = v
    data.images[name], data.scores[name] = images, scores


def _dataset_hash(result: AuditResult) -> str:
    """SHA-256 over the audited samples' ids, labels and pixels: the same data, the same hash."""
    h = hashlib.sha256()
    for s in result.eval_data:
        h.update(s.id.encode("utf-8", "surrogatepass") + b"\0")
        h.update(int(s.label).to_bytes(4, "little"))
        h.update(np.ascontiguousarray(s.image, dtype=np.float32).tobytes())
    return h.hexdigest()


def _model_files(result: AuditResult) -> dict[str, dict[str, Any]]:
    cfg = result.config or {}
    out: dict[str, dict[str, Any]] = {}
    specs = cfg.get("model_specs") or {}
    for name in result.models:
        path = (specs.get(name) or {}).get("path")
        if path is None and len(result.models) == 1:
            path = cfg.get("model") or (cfg.get("model_spec") or {}).get("path")
        out[name] = {"path": path, "sha256": sha256_file(path) if path else None}
    return out


def reproducibility(result: AuditResult, command: str | None) -> dict[str, Any]:
    """Versions, hashes, seeds, device and command line: what someone needs to rerun the audit.

    Nothing run-dependent (timings, host names, dates) goes here: the report must stay
    byte-identical across identical runs; timings are in run_info.json."""
    import torch

    seeds = {"seed": result.seed}
    for name, audit in result.models.items():
        for method, params in audit.method_params.items():
            if isinstance(params, dict) and "seed" in params:
                seeds[f"{name} · {method}"] = params["seed"]
    return {
        "versions": {
            "leakaudit": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "captum": _version("captum"),
            "numpy": np.__version__,
        },
        "models": _model_files(result),
        "dataset": {
            "path": (result.config or {}).get("data"),
            "samples": len(result.eval_data),
            "sha256": _dataset_hash(result),
        },
        "seeds": seeds,
        "device": f"cpu ({platform.machine() or 'unknown'}), torch threads "
        f"{torch.get_num_threads()}",
        "platform": sys.platform,
        "command": command,
    }


# ---------------------------------------------------------------- gallery choices


def _float16(maps: np.ndarray | SpilledStack) -> np.ndarray | SpilledStack:
    """Maps as float16; spilled ones stay in their file (they are float16 already)."""
    return maps if isinstance(maps, SpilledStack) else np.asarray(maps, dtype=np.float16)


MAP_CHUNK = 1024  # maps converted to float32 at a time, so the memory does not grow with them


def box_mass(
    maps: np.ndarray | SpilledStack, box: tuple[int, int, int, int], image_hw: tuple[int, int]
) -> np.ndarray:
    """Share of each map's positive attribution inside ``box`` (image pixels, exclusive end),
    scaled to the map's size; NaN where a map has no positive attribution."""
    sy, sx = maps.shape[1] / image_hw[0], maps.shape[2] / image_hw[1]
    x0, y0, x1, y1 = box
    ys = slice(int(np.floor(y0 * sy)), max(int(np.ceil(y1 * sy)), int(np.floor(y0 * sy)) + 1))
    xs = slice(int(np.floor(x0 * sx)), max(int(np.ceil(x1 * sx)), int(np.floor(x0 * sx)) + 1))
    total = np.zeros(len(maps), np.float32)  # float32 sums, as over the whole stack at once
    inside = np.zeros(len(maps), np.float32)
    for start in range(0, len(maps), MAP_CHUNK):
        m = np.clip(np.nan_to_num(maps[start : start + MAP_CHUNK].astype(np.float32)), 0, None)
        total[start : start + len(m)] = m.sum(axis=(1, 2))
        inside[start : start + len(m)] = m[:, ys, xs].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def _top(values: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest finite values, largest first, ties in data order."""
    finite = np.flatnonzero(np.isfinite(values))
    order = finite[np.argsort(-values[finite], kind="stable")]
    return [int(i) for i in order[:k]]


def offender_score(
    rows: dict[str, np.ndarray],
    maps: np.ndarray | None,
    suspect: dict[str, Any] | None,
    image_hw: tuple[int, int],
) -> tuple[str, np.ndarray] | None:
    """What makes an image an offender, in order of directness: attribution on the known tell;
    else on the top strong suspect (needs the saved maps); else outside the object."""
    tell = rows.get("tell_mass")
    if tell is not None and np.isfinite(tell).any():
        return "share of attribution on the tell", tell
    if suspect is not None and maps is not None and len(maps):
        return "share of attribution on the top suspect", box_mass(maps, suspect["box"], image_hw)
    outside = rows.get("outside_mass")
    if outside is not None and np.isfinite(outside).any():
        return "share of attribution outside the object", outside
    return None


def choose_galleries(
    data: ReportData, summary: dict[str, Any], image_hw: tuple[int, int], k: int = MAX_PANELS
) -> list[dict[str, Any]]:
    """Worst offenders of every model, then confident mistakes, then a typical image per class."""
    galleries: list[dict[str, Any]] = []
    method = data.meta.get("rank_method")
    for model in data.model_names:
        rows = data.method_rows(model, method)
        if not rows:
            continue
        strong = [x for x in summary["models"][model]["suspected_tells"] if x.get("strong")]
        scored = offender_score(
            rows, data.maps.get(model, {}).get(method), strong[0] if strong else None, image_hw
        )
        if scored is not None:
            what, values = scored
            galleries.append(
                {
                    "kind": "worst",
                    "model": model,
                    "method": method,
                    "score": what,
                    "items": [{"index": i, "value": float(values[i])} for i in _top(values, k)],
                }
            )
        wrong = np.flatnonzero((rows["pred"] >= 0) & (rows["pred"] != rows["label"]))
        conf = rows["confidence"][wrong]
        order = wrong[np.argsort(-np.nan_to_num(conf, nan=-1.0), kind="stable")][:k]
        galleries.append(
            {
                "kind": "misclassified",
                "model": model,
                "method": method,
                "score": "confidence",
                "items": [{"index": int(i), "value": float(rows["confidence"][i])} for i in order],
            }
        )
    order = {"worst": 0, "misclassified": 1}  # all models' offenders first: the evidence
    galleries.sort(key=lambda g: order[g["kind"]])
    typical = typical_per_class(data, method, len(summary["class_names"]))
    galleries.append(
        {
            "kind": "typical",
            "model": None,
            "method": None,
            "score": "median outside-object share in its class",
            "items": typical,
        }
    )
    return galleries


def typical_per_class(data: ReportData, method: str | None, n_classes: int) -> list[dict]:
    """Per class (the first 20), the image whose outside-object share (mean over models) is
    closest to the class median; the first image of the class when that is undefined."""
    per_model = [data.method_rows(m, method) for m in data.model_names]
    per_model = [r for r in per_model if r]
    if not per_model:
        return []
    labels = data.labels
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (no masks): expected
        stacked = np.stack([r["outside_mass"] for r in per_model])
        score = np.where(np.isfinite(stacked).any(0), np.nanmean(stacked, axis=0), np.nan)
    items = []
    for c in range(min(n_classes, MAX_TYPICAL_CLASSES)):
        idx = np.flatnonzero(labels == c)
        if not len(idx):
            continue
        vals = score[idx]
        if np.isfinite(vals).any():
            dist = np.abs(vals - np.nanmedian(vals))
            pick = int(idx[np.nanargmin(np.where(np.isfinite(dist), dist, np.inf))])
        else:
            pick = int(idx[0])
        items.append({"index": pick, "value": float(score[pick])})
    return items


# ---------------------------------------------------------------- the whole bundle


def insight_page_name(index: int, model: str) -> str:
    """File name of a model's insight page beside the report: the model's position plus its
    name reduced to safe characters (names come from data: never a path, never a collision)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in model)
    return f"insight_{index}_{safe[:40] or 'model'}.html"


def collect(result: AuditResult, summary: dict[str, Any], command: str | None) -> ReportData:
    """Everything the report renders beyond summary.json, from an in-memory result."""
    models = list(result.models)
    first = result.models[models[0]] if models else None
    methods = list(first.method_params) if first is not None else []
    rank = "saliency" if "saliency" in methods else (methods[0] if methods else None)
    data = ReportData(
        meta={
            "model_names": models,
            "methods": methods,
            "rank_method": rank,
            "notes": list(result.notes),
            "command": command,
            "reproducibility": reproducibility(result, command),
            "n_panels_max": MAX_PANELS,
        }
    )
    n = len(result.eval_data)
    data.ids = np.array([s.id for s in result.eval_data], dtype=str)
    data.labels = np.array([int(s.label) for s in result.eval_data], dtype=np.int64)
    first_index: dict[str, int] = {}
    for i, x in enumerate(data.ids):
        first_index.setdefault(str(x), i)
    pages = {}
    for i, (name, audit) in enumerate(result.models.items()):
        if getattr(audit, "insight_pictures", None) is not None:
            data.class_pictures[name] = np.asarray(audit.insight_pictures, np.uint8)
        if getattr(audit, "insight_page", None) is not None:
            pages[name] = insight_page_name(i, name)
    if pages:
        data.meta["insight_pages"] = pages
    for name, audit in result.models.items():
        _per_sample(data, name, audit, n, first_index)
        compact = getattr(audit, "compact_maps", None) or {}
        data.maps[name] = {m: _float16(v) for m, v in compact.items()}
    image_hw = result.eval_data[0].shape[:2] if len(result.eval_data) else (1, 1)
    data.meta["image_shape"] = list(image_hw)
    galleries = choose_galleries(data, summary, image_hw)
    data.meta["galleries"] = galleries
    shown = sorted({it["index"] for g in galleries for it in g["items"]} | set(result.gallery))
    data.meta["thumb_index"] = shown
    thumbs = [thumbnail(result.eval_data[i].image) for i in shown]
    shape = thumbs[0].shape[:2] if thumbs else (1, 1)
    data.thumbs = np.stack(thumbs) if thumbs else np.zeros((0, *shape, 3), np.uint8)
    samples = [result.eval_data[i] for i in shown]
    data.thumb_regions = (
        np.stack([resize_mask(s.region, shape) for s in samples])
        if samples
        else (np.zeros((0, *shape), bool))
    )
    data.thumb_tells = (
        np.stack([resize_mask(s.tell, shape) for s in samples])
        if samples
        else (np.zeros((0, *shape), bool))
    )
    for name, audit in result.models.items():
        data.panel_maps[name] = {}
        for method in methods:
            compact = data.maps[name].get(method)
            kept = audit.gallery_maps.get(method)
            panels = []
            for i in shown:
                if compact is not None and i < len(compact):
                    panels.append(resize_map(compact[i], shape))
                elif kept is not None and i in result.gallery:
                    panels.append(resize_map(kept[result.gallery.index(i)], shape))
                else:
                    panels.append(np.full(shape, np.nan, np.float16))
            data.panel_maps[name][method] = (
                np.stack(panels) if panels else np.zeros((0, *shape), np.float16)
            )
    return data
