"""Bootstrap intervals, grouped summaries and paired comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leakaudit.evidence.stats import bootstrap_ci, grouped_summary, paired_compare


def test_bootstrap_reproducible_and_contains_mean():
    v = np.random.default_rng(1).normal(0.3, 0.1, 200)
    a = bootstrap_ci(v, seed=7)
    b = bootstrap_ci(v, seed=7)
    assert a == b
    mean, lo, hi = a
    assert lo < mean < hi and a.n == 200
    assert mean == pytest.approx(v.mean())
    assert bootstrap_ci(v, seed=8) != a


def test_bootstrap_ignores_nan_and_reports_n():
    iv = bootstrap_ci([1.0, 2.0, np.nan, 3.0, np.inf], seed=0)
    assert iv.n == 3 and iv.mean == pytest.approx(2.0)


def test_bootstrap_degenerate_cases():
    mean, lo, hi = bootstrap_ci(np.full(50, 0.4), seed=0)
    assert mean == lo == hi == pytest.approx(0.4)
    one = bootstrap_ci([0.7])
    assert (one.mean, one.lo, one.hi, one.n) == (0.7, 0.7, 0.7, 1)
    empty = bootstrap_ci([np.nan, np.nan])
    assert empty.n == 0 and np.isnan(empty.mean) and np.isnan(empty.lo)


def test_bootstrap_width_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(size=20), seed=0)
    large = bootstrap_ci(rng.normal(size=2000), seed=0)
    assert (large.hi - large.lo) < (small.hi - small.lo)


def test_grouped_summary():
    df = pd.DataFrame(
        {"label": [0, 0, 0, 1, 1, 1], "x": [1.0, 1.0, 1.0, 0.0, 0.2, np.nan], "y": np.arange(6.0)}
    )
    out = grouped_summary(df, ["x", "y"], by="label", seed=0)
    assert list(out.columns) == ["label", "metric", "n", "mean", "lo", "hi"]
    assert len(out) == 6  # (0, 1, all) × (x, y)
    row = out[(out.label == 1) & (out.metric == "x")].iloc[0]
    assert row.n == 2 and row["mean"] == pytest.approx(0.1)
    row = out[(out.label == "all") & (out.metric == "x")].iloc[0]
    assert row.n == 5 and row.lo <= row["mean"] <= row.hi
    row = out[(out.label == 0) & (out.metric == "x")].iloc[0]
    assert row.lo == row.hi == 1.0


def test_paired_compare_detects_shift_not_null():
    rng = np.random.default_rng(3)
    base = rng.random(100)
    shifted = paired_compare(base + 0.1 + rng.normal(0, 0.02, 100), base, seed=0)
    assert shifted["n"] == 100
    assert shifted["lo"] > 0 and shifted["p_value"] < 1e-6 and shifted["cohens_dz"] > 2
    null = paired_compare(base + rng.normal(0, 0.02, 100), base, seed=0)
    assert null["lo"] < 0 < null["hi"] and null["p_value"] > 0.05
    assert abs(null["cohens_dz"]) < 0.3


def test_paired_compare_edge_cases():
    same = paired_compare([0.5, 0.6, np.nan], [0.5, 0.6, 0.1])
    assert same["n"] == 2 and same["p_value"] == 1.0 and np.isnan(same["cohens_dz"])
    with pytest.raises(ValueError):
        paired_compare([1.0], [1.0, 2.0])
