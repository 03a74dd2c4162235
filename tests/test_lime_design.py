"""Known answers for LIME's orthogonal design (explain/lime_design.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leakaudit.explain.lime import Lime, weighted_ridge
from leakaudit.explain.lime_design import (
    block_orders,
    hadamard,
    hadamard_order,
    orders,
    orthogonal_design,
)


def test_every_order_built_is_hadamard() -> None:
    built = [m for m in orders() if m <= 256]
    assert {4, 8, 12, 20, 24, 28, 36, 44, 48, 56, 60, 64, 76, 96, 128} <= set(built)
    for m in built:
        h = hadamard(m)
        np.testing.assert_array_equal(h @ h.T, m * np.eye(m, dtype=np.int64))
        assert (h[:, 0] == 1).all()


def test_orders_and_blocks() -> None:
    assert [hadamard_order(n) for n in (1, 5, 46, 48, 49, 52)] == [1, 8, 48, 48, 56, 56]
    assert block_orders(96, 45) == [48]  # one whole block
    assert block_orders(112, 45) == [56]  # a larger order fits 112 runs exactly
    assert block_orders(100, 45) == [48, 48]  # whole block + 2 pairs of a second one
    assert block_orders(64, 45) == [48]  # too few runs for a whole block: partial
    assert block_orders(0, 45) == []


@pytest.mark.parametrize(("n", "k"), [(96, 45), (112, 45), (24, 11), (192, 47)])
def test_whole_block_is_balanced_uncorrelated_and_folded(n: int, k: int) -> None:
    z = orthogonal_design(np.random.default_rng(1), n, k)
    assert z.shape == (n, k)
    np.testing.assert_array_equal(z[1::2], 1 - z[0::2])  # (z, 1 − z) side by side
    c = 2 * z.astype(np.int64) - 1
    np.testing.assert_array_equal(c.T @ c, n * np.eye(k, dtype=np.int64))
    assert (z.sum(0) == n // 2).all()


def test_partial_block_keeps_pairs_and_seed_decides() -> None:
    a = orthogonal_design(np.random.default_rng(5), 101, 45)
    np.testing.assert_array_equal(a[1:100:2], 1 - a[0:100:2])
    np.testing.assert_array_equal(a, orthogonal_design(np.random.default_rng(5), 101, 45))
    assert not np.array_equal(a, orthogonal_design(np.random.default_rng(6), 101, 45))


def test_unweighted_fit_on_whole_block_recovers_a_linear_model() -> None:
    """y = 0.3 + β·z exactly: on an orthogonal design ridge shrinks every weight by the same
    factor, n/4 / (n/4 + α) (each column's variance is 1/4)."""
    k, n, alpha = 30, 64, 1.0
    beta = np.random.default_rng(2).normal(size=k)
    z = orthogonal_design(np.random.default_rng(3), n, k)
    y = 0.3 + z @ beta
    t = torch.from_numpy
    coef = weighted_ridge(t(z)[None], t(y)[None], torch.ones(1, n), alpha)[0].numpy()
    np.testing.assert_allclose(coef, beta * (n / 4) / (n / 4 + alpha), rtol=1e-10)


class _Linear(torch.nn.Module):
    """Logit linear in the left half's red channel: only the left superpixels matter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[:, 0, :, :8].mean((1, 2))
        return torch.stack([torch.zeros_like(left), 2 * left], 1)


def test_lime_orthogonal_unweighted_independent_of_batching() -> None:
    img = np.zeros((3, 16, 16, 3), dtype=np.float32)
    img[:, :, :8, 0] = np.array([0.1, 0.3, 0.9])[:, None, None]
    segs = np.tile((np.arange(16)[None, :] // 4) + 4 * (np.arange(16)[:, None] // 4), (3, 1, 1))
    kw = {"n_samples": 64, "baseline": "constant", "sampling": "orthogonal", "kernel_width": None}
    a = Lime(_Linear(), forward_batch=7, images_per_chunk=1, **kw)
    b = Lime(_Linear(), forward_batch=64, images_per_chunk=3, **kw)
    wa = a.attribute(img, np.ones(3, int), segs).extras["weights"]
    wb = b.attribute(img, np.ones(3, int), segs).extras["weights"]
    np.testing.assert_allclose(wa, wb, rtol=1e-6)
    assert a.params["kernel_width"] is None
    # only the superpixels in columns 0–7 (segment columns 0, 1) can matter
    left = (np.arange(16) % 4) < 2
    assert (np.abs(wa[:, left]).min(1) > 10 * np.abs(wa[:, ~left]).max(1)).all()
