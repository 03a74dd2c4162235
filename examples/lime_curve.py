"""LIME samples-vs-fidelity curve per design, on many images and seeds (docs/scale.md §2b).

Why: the scale benchmark judges 3 images once; choosing a sampling design needs more images,
several seeds and designs that the product does not ship (the old partial-Hadamard design,
early stopping). The model and images are the scale benchmark's (ResNet-18 trained briefly,
64 px, SLIC 50 segments, segment-mean baseline); the reference is the ``lime`` package at
4 000 samples, cached in --cache because it is by far the most expensive part.

    LEAKAUDIT_THREADS=1 .venv/bin/python examples/lime_curve.py --images 8 --seeds 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from leakaudit.data.synthetic import make_shapes
from leakaudit.experiments.bench import (
    N_SEGMENTS,
    lime_package_weights,
    spearman_mean,
)
from leakaudit.experiments.bench_scale import train_scale_model
from leakaudit.explain.lime import Lime, sample_masks, segment, weighted_ridge
from leakaudit.models.predict import predict_proba
from leakaudit.runtime import configure


def old_orthogonal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """The design before this change: n/2 random rows of one Sylvester matrix + fold-over,
    row 0 forced all-on (kept here only to measure against)."""
    half = (n + 1) // 2
    size = 1 << int(np.ceil(np.log2(max(half, k + 1, 2))))
    h = np.ones((1, 1))
    while len(h) < size:
        h = np.block([[h, h], [h, -h]])
    top = h[np.ix_(rng.permutation(size)[:half], 1 + rng.permutation(size - 1)[:k])]
    top = (top * rng.choice([-1, 1], size=k) > 0).astype(np.float32)
    z = np.concatenate([top, 1 - top])[:n]
    z[0] = 1
    return z


def fit(z: np.ndarray, y: np.ndarray, kernel: bool) -> np.ndarray:
    k = z.shape[1]
    w = np.ones(len(z))
    if kernel:  # lime's: exponential kernel on the cosine distance to the all-on mask
        w = np.sqrt(np.exp(-((1 - np.sqrt(z.sum(1) / k)) ** 2) / 0.25**2))
    t = torch.from_numpy
    return weighted_ridge(t(z)[None], t(y)[None], t(w)[None], 1.0)[0].numpy()


def early_stop(z: np.ndarray, y: np.ndarray, chunk: int, top: int, stable: int) -> int:
    """Samples used when refitting every ``chunk`` and stopping once the top-``top`` ranking
    has not changed for ``stable`` refits."""
    prev, same, n = None, 0, chunk
    while n < len(z):
        rank = tuple(np.argsort(-fit(z[:n], y[:n], False))[:top])
        same = same + 1 if rank == prev else 0
        if same >= stable:
            return n
        prev, n = rank, n + chunk
    return len(z)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lime-curve-cache"))
    a = ap.parse_args()
    configure()
    a.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.process_time()
    model = train_scale_model("resnet18", 64, 0, False)
    images = make_shapes(a.images, seed=1, size=64, n_classes=4).images()
    targets = predict_proba(model, images).argmax(1)
    segs = np.stack([segment(im, N_SEGMENTS) for im in images])
    refs = []
    for i in range(a.images):  # the reference depends on the model, so the key names it
        p = a.cache / f"ref-{a.images}-{i}.npy"
        if not p.exists():
            sl = slice(i, i + 1)
            ref_i = lime_package_weights(model, images[sl], targets[sl], segs[sl], 4000, 300 + i)
            np.save(p, ref_i)
        refs.append(np.load(p)[0])
    kmax = max(len(r) for r in refs)
    ref = np.stack([np.pad(r, (0, kmax - len(r)), constant_values=np.nan) for r in refs])
    lime = Lime(model, baseline="mean")  # its forward pass, for designs it does not ship

    def ys(i: int, z: np.ndarray) -> np.ndarray:
        sl = slice(i, i + 1)
        return lime.responses(images[sl], targets[sl], segs[sl], z[None])[0].astype(np.float64)

    designs = {
        "old orthogonal (partial Sylvester, all-on row), kernel": (old_orthogonal, True),
        "orthogonal (whole blocks), kernel": (None, True),
        "orthogonal (whole blocks), unweighted": (None, False),
    }
    print(f"{'design':<56}" + "".join(f"{n:>7}" for n in (96, 128, 200)))
    for name, (make, kernel) in designs.items():
        row = []
        for n in (96, 128, 200):
            w = np.full((a.images * a.seeds, kmax), np.nan)
            for i in range(a.images):
                k = int(segs[i].max()) + 1
                for s in range(a.seeds):
                    rng = np.random.default_rng([s, i, n])
                    z = make(rng, n, k) if make else sample_masks(rng, n, k, "orthogonal")
                    w[i * a.seeds + s, :k] = fit(z.astype(np.float64), ys(i, z), kernel)
            row.append(spearman_mean(w, np.repeat(ref, a.seeds, axis=0)))
        print(f"{name:<56}" + "".join(f"{r:>7.3f}" for r in row))
    w = np.full((a.images * a.seeds, kmax), np.nan)
    for i in range(a.images):
        k = int(segs[i].max()) + 1
        for s in range(a.seeds):
            z = sample_masks(np.random.default_rng([s, i, 1000]), 1000, k, "bernoulli")
            w[i * a.seeds + s, :k] = fit(z.astype(np.float64), ys(i, z), True)
    iid = spearman_mean(w, ref.repeat(a.seeds, 0))
    print(f"{'i.i.d. (lime design), kernel, 1000 samples':<56}{iid:>7.3f}")
    long = {}  # one 400-sample orthogonal run per image and seed, prefixes for early stopping
    for i in range(a.images):
        k = int(segs[i].max()) + 1
        for s in range(a.seeds):
            z = sample_masks(np.random.default_rng([s, i, 400]), 400, k, "orthogonal")
            long[i, s] = z.astype(np.float64), ys(i, z)
    for chunk, top, stable in ((400, 0, 0), (16, 5, 2), (32, 5, 2), (32, 5, 3), (32, 10, 2)):
        used, w = [], np.full((a.images * a.seeds, kmax), np.nan)
        for (i, s), (z, y) in long.items():
            n = len(z) if chunk == len(z) else early_stop(z, y, chunk, top, stable)
            used.append(n)
            w[i * a.seeds + s, : z.shape[1]] = fit(z[:n], y[:n], False)
        rule = f"chunk {chunk}, top-{top} stable for {stable} refits" if top else "none (400)"
        fid = spearman_mean(w, ref.repeat(a.seeds, 0))
        print(f"early stop: {rule}: samples mean {np.mean(used):.0f} (min {min(used)}, "
              f"max {max(used)}), Spearman {fid:.3f}")  # fmt: skip
    print(f"CPU {time.process_time() - t0:.0f} s")


if __name__ == "__main__":
    main()
