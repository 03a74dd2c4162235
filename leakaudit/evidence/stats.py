"""Uncertainty for per-image scores: bootstrap intervals, per-class summaries, paired tests.

An audit compares means over a few hundred images; without an interval a 0.05 gap between two
models is uninterpretable. Percentile bootstrap (Efron & Tibshirani 1993, ch. 13) needs no
distributional assumption, which matters for bounded, skewed scores like mass shares. NaN scores
(empty masks, blank maps) are dropped and the number actually used is always reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

_CHUNK = 2_000_000  # resample indices drawn per chunk: bounds memory for large n


@dataclass(frozen=True)
class Interval:
    """Mean with a bootstrap interval and the number of finite values used.

    Unpacks as ``mean, lo, hi = bootstrap_ci(...)``; ``n`` is the extra field."""

    mean: float
    lo: float
    hi: float
    n: int

    def __iter__(self) -> Iterator[float]:
        return iter((self.mean, self.lo, self.hi))


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _bootstrap_means(v: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    n = len(v)
    per_chunk = max(1, _CHUNK // n)
    means = []
    for start in range(0, n_boot, per_chunk):
        rows = min(per_chunk, n_boot - start)
        means.append(v[rng.integers(0, n, size=(rows, n))].mean(axis=1))
    return np.concatenate(means)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of the mean, ignoring NaN/inf.

    No finite values → all NaN with n=0; one value or a constant → the degenerate interval
    [mean, mean] (resampling cannot show spread that the data do not have)."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    v = _finite(values)
    if len(v) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(v.mean())
    if len(v) == 1 or np.all(v == v[0]):
        return Interval(mean, mean, mean, len(v))
    boots = _bootstrap_means(v, n_boot, np.random.default_rng(seed))
    alpha = (1 - ci) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    # The percentile interval of a skewed resample can miss the sample mean by a rounding hair.
    return Interval(mean, float(min(lo, mean)), float(max(hi, mean)), len(v))


def grouped_summary(
    df: pd.DataFrame,
    value_cols: Sequence[str],
    by: str = "label",
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Tidy table: one row per (group, metric) with n, mean, lo, hi; group ``"all"`` is overall.

    Per-class rows matter because a tell is usually planted in (or learnt for) some classes only:
    an overall mean can hide one class at 0.9 tell mass among three at 0.1."""
    rows: list[dict[str, Any]] = []
    groups = [(g, sub) for g, sub in df.groupby(by, sort=True)] if len(df) else []
    for group, sub in [*groups, ("all", df)]:
        for col in value_cols:
            iv = bootstrap_ci(sub[col].to_numpy(), n_boot=n_boot, ci=ci, seed=seed)
            rows.append(
                {by: group, "metric": col, "n": iv.n, "mean": iv.mean, "lo": iv.lo, "hi": iv.hi}
            )
    return pd.DataFrame(rows, columns=[by, "metric", "n", "mean", "lo", "hi"])


def paired_compare(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    seed: int = 0,
    n_boot: int = 1000,
    ci: float = 0.95,
) -> dict[str, float | int | str]:
    """Compare two models' scores on the *same* images (a[i] and b[i] belong to image i).

    Pairing removes the between-image variance, so small but consistent gaps are detectable.
    Returns n (pairs with both values finite), mean_diff (a − b) with its bootstrap lo/hi,
    Cohen's d_z = mean(d) / sd(d) (Cohen 1988; Lakens 2013 — the paired-design effect size; NaN
    when sd is 0 because the ratio is then undefined), and the two-sided Wilcoxon signed-rank
    p-value (zero differences dropped; p = 1 when every difference is zero)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired inputs differ in length: {a.shape} vs {b.shape}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    iv = bootstrap_ci(d, n_boot=n_boot, ci=ci, seed=seed)
    out: dict[str, float | int | str] = {
        "n": iv.n,
        "mean_diff": iv.mean,
        "lo": iv.lo,
        "hi": iv.hi,
        "cohens_dz": float("nan"),
        "p_value": float("nan"),
        "test": "wilcoxon signed-rank (two-sided)",
    }
    if iv.n >= 2:
        sd = float(d.std(ddof=1))
        out["cohens_dz"] = float(d.mean() / sd) if sd > 0 else float("nan")
    if iv.n >= 1:
        if np.all(d == 0):
            out["p_value"] = 1.0
        else:
            out["p_value"] = float(sps.wilcoxon(d, zero_method="wilcox").pvalue)
    return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (Wilson 1927) of a share: 0 of 20 is not "0 %", it is "at
    most ~16 %", and 3 of 10 is weaker evidence than 30 of 100. With no trials nothing is
    known: (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return float(max(0.0, (centre - spread) / scale)), float(min(1.0, (centre + spread) / scale))


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    """Lower end of the Wilson interval: a handful of correctly predicted images must not look
    strong (0 with no trials)."""
    return wilson_interval(successes, n, z)[0]


MIN_PER_CLASS = 2  # a per-class mean needs more than one image to have any spread


def stratified_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` samples, each class in proportion (at least ``MIN_PER_CLASS``
    where the class has that many), chosen with ``seed``."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        take = max(min(MIN_PER_CLASS, len(idx)), int(round(n * len(idx) / len(labels))))
        keep.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
