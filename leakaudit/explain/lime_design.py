"""Two-level orthogonal designs for LIME: whole Hadamard matrices with fold-over.

Why: LIME fits a linear surrogate over superpixels. Its noise is the model's non-linearity,
which an i.i.d. design spreads over every coefficient. A fold-over orthogonal array (rows z
and 1 − z, Box & Hunter 1961) estimates each main effect free of all even-order interactions,
and only a *whole* Hadamard matrix has exactly balanced, uncorrelated columns — a partial one
(some rows dropped) loses most of that. So the design is built from blocks of 2·m runs with m
a Hadamard order above the superpixel count (``block_orders``).

Hadamard matrices of order m are built as Sylvester doublings of 1, of Paley I (q + 1 for a
prime q ≡ 3 mod 4) and of Paley II (2(q + 1) for a prime q ≡ 1 mod 4): every multiple of 4 up
to 200 except 52, 92, 100, 116, 156, 172, 184 and 188 (the next order built is used there).

Measured (docs/scale.md §2): whole blocks fitted without lime's kernel weights reach Spearman
0.966 at 96 samples and 0.977 at 128 against lime at 4 000, where lime's i.i.d. design needs
about 1 000 samples for 0.978; prefixes of a block (early stopping) do worse than whole ones.
"""

from __future__ import annotations

import functools

import numpy as np

MAX_ORDER = 4096


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q**0.5) + 1))


def _jacobsthal(q: int) -> np.ndarray:
    """Q[a, b] = χ(b − a), χ the quadratic character of the prime field GF(q)."""
    squares = np.zeros(q, dtype=np.int64)
    squares[(np.arange(1, q) ** 2) % q] = 1
    chi = np.where(squares == 1, 1, -1)
    chi[0] = 0
    a = np.arange(q)
    return chi[(a[None, :] - a[:, None]) % q]


def _paley(q: int) -> np.ndarray:
    """Paley I (order q + 1, q ≡ 3 mod 4) or Paley II (order 2(q + 1), q ≡ 1 mod 4)."""
    jac = _jacobsthal(q)
    ones = np.ones((q, 1), dtype=np.int64)
    if q % 4 == 3:
        s = np.block([[np.zeros((1, 1), dtype=np.int64), ones.T], [-ones, jac]])
        return s + np.eye(q + 1, dtype=np.int64)
    c = np.block([[np.zeros((1, 1), dtype=np.int64), ones.T], [ones, jac]])
    return np.kron(c, np.array([[1, 1], [1, -1]])) + np.kron(
        np.eye(q + 1, dtype=np.int64), np.array([[1, -1], [-1, -1]])
    )


@functools.cache
def _seeds() -> dict[int, int]:
    """Order → prime q of a Paley matrix of that order (0: Sylvester's order-1 seed)."""
    out = {1: 0}
    for q in range(3, MAX_ORDER):
        if _is_prime(q):
            order = q + 1 if q % 4 == 3 else 2 * (q + 1)
            if order <= MAX_ORDER:
                out.setdefault(order, q)
    return out


@functools.cache
def orders() -> tuple[int, ...]:
    """Every order ≤ ``MAX_ORDER`` built here (powers of 2 times a Paley order), ascending."""
    out = set()
    for m in _seeds():
        while m <= MAX_ORDER:
            out.add(m)
            m *= 2
    return tuple(sorted(out))


def hadamard_order(n: int) -> int:
    """The smallest order ≥ n this module can build."""
    for m in orders():
        if m >= n:
            return m
    raise ValueError(f"no Hadamard matrix of order ≥ {n} up to {MAX_ORDER}")


@functools.cache
def hadamard(order: int) -> np.ndarray:
    """A Hadamard matrix (H Hᵀ = order·I) normalised so that column 0 is all ones."""
    for seed, q in _seeds().items():
        m, doublings = seed, 0
        while m < order:
            m, doublings = m * 2, doublings + 1
        if m == order:
            h = np.ones((1, 1), dtype=np.int64) if q == 0 else _paley(q)
            for _ in range(doublings):
                h = np.block([[h, h], [h, -h]])
            h = h * h[:, :1]  # rows times their first entry: column 0 becomes all ones
            h.setflags(write=False)
            return h
    raise ValueError(f"no Hadamard matrix of order {order} here")


def block_orders(n_samples: int, k: int) -> list[int]:
    """Hadamard orders of the blocks that make up ``n_samples`` runs for ``k`` superpixels.

    Greedy: the largest order m ≥ k + 1 with 2·m ≤ the runs still needed, so that as many
    runs as possible sit in whole blocks; a remainder shorter than 2·(k + 1) runs is a partial
    block of the smallest usable order."""
    out, left = [], n_samples
    while left > 0:
        fits = [m for m in orders() if k + 1 <= m and 2 * m <= left]
        m = fits[-1] if fits else hadamard_order(k + 1)
        out.append(m)
        left -= 2 * m
    return out


def orthogonal_design(rng: np.random.Generator, n_samples: int, k: int) -> np.ndarray:
    """Binary (n_samples, k) fold-over design, runs in pairs (z, 1 − z) side by side.

    Each block of order m (``block_orders``): the m rows of a Hadamard matrix, k of its
    non-constant columns at random with random signs, rows in random order, each row followed
    by its complement. In a whole block every column is on in exactly half the runs and every
    two columns are uncorrelated; a last, partial block keeps its first rows, so the design is
    still made of fold-over pairs."""
    blocks = []
    for m in block_orders(n_samples, k):
        h = hadamard(m)
        rows = rng.permutation(m)
        cols = 1 + rng.permutation(m - 1)[:k]
        signs = rng.choice(np.array([-1, 1]), size=k)
        top = (h[np.ix_(rows, cols)] * signs > 0).astype(np.float32)
        pairs = np.empty((2 * m, k), dtype=np.float32)
        pairs[0::2], pairs[1::2] = top, 1.0 - top
        blocks.append(pairs)
    return np.concatenate(blocks)[:n_samples] if blocks else np.zeros((0, k), np.float32)
