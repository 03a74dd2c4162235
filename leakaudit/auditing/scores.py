"""The per-sample score table and what is read off it: per-method means (with bootstrap CIs for
a sampled method), per-class means, and the gallery's full-size maps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from leakaudit.evidence import metrics
from leakaudit.evidence.stats import bootstrap_ci


def score_columns() -> list[str]:
    """The per-sample score columns: every audited metric of the registry (``metrics.py``)."""
    return [m.name for m in metrics.audited()]


def per_sample_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The scored rows (``engines.work.score_rows``) as the audit's per-sample table."""
    columns = ["id", "label", "pred", "method", *score_columns(), "confidence", "p_true"]
    return pd.DataFrame(rows, columns=columns)


def sample_intervals(
    per_sample: pd.DataFrame, method: str, n_sampled: int, seed: int
) -> dict[str, Any]:
    """A sampled method's bootstrap 95 % CIs: ``<score>_ci95`` = [lo, hi] per mean."""
    g = per_sample[per_sample["method"] == method]
    out: dict[str, Any] = {"sampled": True, "n_sampled": int(n_sampled)}
    for m in metrics.audited():
        iv = bootstrap_ci(g[m.name].to_numpy(dtype=float), seed=seed)
        out[f"{m.key}_ci95"] = [iv.lo, iv.hi]
    return out


def summarise(per_sample: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per method: mean of each audited metric over the images where it is defined (NaN-aware),
    under its summary key; ``n_with_region`` / ``n_with_tell`` count the images where the first
    metric that needs that mask is defined."""
    out = {}
    audited = [m for m in metrics.audited() if m.name in per_sample]
    first = {}
    for m in audited:
        first.setdefault(m.needs, m.name)
    for method, g in per_sample.groupby("method", sort=False):
        means: dict[str, float] = {m.key: _nanmean(g[m.name]) for m in audited}
        means["n"] = len(g)
        for needs, col in first.items():
            means[f"n_with_{needs}"] = int(g[col].notna().sum())
        out[str(method)] = means
    return out


def per_class_table(per_sample: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Mean scores per (method, class) plus an 'all' row per method."""
    df = per_sample.copy()
    df["class"] = [class_names[i] for i in df["label"]]
    cols = [c for c in score_columns() if c in df]
    by_class = df.groupby(["method", "class"], sort=False)[cols].mean().reset_index()
    overall = df.groupby("method", sort=False)[cols].mean().reset_index()
    overall["class"] = "all"
    counts = df.groupby(["method", "class"], sort=False).size().rename("n").reset_index()
    by_class = by_class.merge(counts, on=["method", "class"])
    overall["n"] = df.groupby("method", sort=False).size().values
    return pd.concat([by_class, overall], ignore_index=True)


def _nanmean(x) -> float:
    arr = np.asarray(x, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def gallery_stack(
    kept: dict[int, np.ndarray], gallery: Sequence[int], shape: tuple[int, int] | None
) -> np.ndarray:
    """(G, H, W) gallery maps; an image a budgeted method skipped shows as NaN (not explained).
    ``shape``: the first gallery image's (H, W)."""
    if not gallery or shape is None:
        return np.zeros((0, 1, 1), np.float32)
    return np.stack([kept.get(i, np.full(shape, np.nan, np.float32)) for i in gallery])
