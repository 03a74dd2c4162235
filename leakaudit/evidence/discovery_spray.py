"""SpRAy: spectral clustering of attribution maps (Lapuschkin et al. 2019), with its seeded
k-means. Split out of ``discovery`` (which re-exports both); pure numpy/scipy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh


@dataclass
class SprayResult:
    """Cluster label per map, the Laplacian's smallest eigenvalues and the chosen k."""

    labels: np.ndarray
    eigenvalues: np.ndarray
    n_clusters: int


def kmeans(x: np.ndarray, k: int, seed: int, n_init: int = 5, n_iter: int = 100) -> np.ndarray:
    """Seeded Lloyd k-means with k-means++ starts; returns labels of the lowest-inertia run."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = max(1, min(k, n))
    best, best_inertia = np.zeros(n, dtype=np.int64), np.inf
    for _ in range(n_init):
        centres = [x[rng.integers(n)]]
        for _ in range(1, k):
            d2 = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
            centres.append(x[rng.choice(n, p=p)])
        c = np.asarray(centres, dtype=np.float64)
        labels = np.zeros(n, dtype=np.int64)
        for it in range(n_iter):
            labels_new = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
            if it > 0 and np.array_equal(labels_new, labels):
                break
            labels = labels_new
            for j in range(k):
                if (labels == j).any():
                    c[j] = x[labels == j].mean(0)
        inertia = ((x - c[labels]) ** 2).sum()
        if inertia < best_inertia - 1e-12:
            best, best_inertia = labels.copy(), inertia
    return best


def _downsample(maps: np.ndarray, size: int) -> np.ndarray:
    """Block-average (N, H, W) maps by integer factors to about size × size."""
    n, h, w = maps.shape
    fy, fx = max(1, h // size), max(1, w // size)
    hh, ww = (h // fy) * fy, (w // fx) * fx
    return maps[:, :hh, :ww].reshape(n, hh // fy, fy, ww // fx, fx).mean(axis=(2, 4))


def _squared_distances(x: np.ndarray, max_bytes: int = 32 * 2**20) -> np.ndarray:
    """(n, n) squared Euclidean distances, a block of rows at a time: the one-shot broadcast
    holds n × n × d floats (0.9 GB for one class of 670 images at 16 × 16); the same arithmetic
    per block gives the same numbers."""
    n, d = x.shape
    rows = max(1, max_bytes // max(1, n * d * x.itemsize))
    out = np.empty((n, n), dtype=x.dtype)
    for i in range(0, n, rows):
        out[i : i + rows] = ((x[i : i + rows, None, :] - x[None]) ** 2).sum(-1)
    return out


def spray(
    maps: np.ndarray,
    size: int = 16,
    n_neighbors: int = 10,
    max_clusters: int = 6,
    seed: int = 0,
) -> SprayResult:
    """SpRAy clustering of attribution maps (Lapuschkin et al. 2019).

    Maps are downsampled to ≈ size², made non-negative and scaled to unit sum (so clusters group
    *where* the evidence is, not how much), linked to their ``n_neighbors`` nearest neighbours
    (symmetrised, binary weights), and embedded with the smallest eigenvectors of the normalised
    Laplacian L = I − D^-½ W D^-½. k is where the gap between consecutive eigenvalues is largest
    (k ≥ 2 up to ``max_clusters``); rows of the embedding are unit-normalised before k-means."""
    n = len(maps)
    if n < 4:
        return SprayResult(np.zeros(n, dtype=np.int64), np.zeros(0), 1)
    x = _downsample(np.clip(np.nan_to_num(np.asarray(maps, np.float64)), 0, None), size)
    x = x.reshape(n, -1)
    x = x / np.where(x.sum(1, keepdims=True) > 0, x.sum(1, keepdims=True), 1.0)
    d2 = _squared_distances(x)
    kn = max(1, min(n_neighbors, n - 1))
    order = np.argsort(d2 + np.diag(np.full(n, np.inf)), axis=1, kind="stable")[:, :kn]
    w = np.zeros((n, n))
    w[np.repeat(np.arange(n), kn), order.ravel()] = 1.0
    w = np.maximum(w, w.T)
    deg = w.sum(1)
    inv = 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0))
    lap = np.eye(n) - inv[:, None] * w * inv[None, :]
    m = min(n, max_clusters + 1)
    vals, vecs = eigh(lap, subset_by_index=[0, m - 1])
    gaps = np.diff(vals)
    k = int(np.argmax(gaps[1:]) + 2) if len(gaps) > 1 else 1
    emb = vecs[:, :k]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return SprayResult(kmeans(emb, k, seed), vals, k)
