"""Seeded synthetic shapes on cluttered backgrounds, with an exact object mask per image.

The class is carried only by the object's *shape*: object colour, size, position, background
gradient, noise and clutter are all random and independent of the class, so a model that scores
well must look at the object — unless a tell is planted.
"""

from __future__ import annotations

import numpy as np
from skimage import draw

from leakaudit.data.samples import Dataset, Sample

SHAPES = ("disc", "square", "triangle", "cross", "ring", "diamond")


def _shape_mask(kind: str, size: int, cy: int, cx: int, r: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    shape = (size, size)
    if kind == "disc":
        mask[draw.disk((cy, cx), r, shape=shape)] = True
    elif kind == "square":
        h = int(round(r * 0.85))
        mask[max(cy - h, 0) : cy + h, max(cx - h, 0) : cx + h] = True
    elif kind == "triangle":
        rows = [cy - r, cy + r, cy + r]
        cols = [cx, cx - r, cx + r]
        mask[draw.polygon(rows, cols, shape=shape)] = True
    elif kind == "cross":
        w = max(2, r // 3)
        mask[max(cy - r, 0) : cy + r, max(cx - w, 0) : cx + w] = True
        mask[max(cy - w, 0) : cy + w, max(cx - r, 0) : cx + r] = True
    elif kind == "ring":
        mask[draw.disk((cy, cx), r, shape=shape)] = True
        mask[draw.disk((cy, cx), max(1, int(r * 0.55)), shape=shape)] = False
    elif kind == "diamond":
        rows = [cy - r, cy, cy + r, cy]
        cols = [cx, cx + r, cx, cx - r]
        mask[draw.polygon(rows, cols, shape=shape)] = True
    else:
        raise ValueError(f"unknown shape {kind!r}; choose from {SHAPES}")
    return mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random two-colour gradient with noise and thin clutter lines/ellipses."""
    c0, c1 = rng.uniform(0.05, 0.95, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    t = np.clip(0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)), 0, 1)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    for _ in range(int(rng.integers(3, 7))):
        colour = rng.uniform(0, 1, size=3)
        if rng.random() < 0.6:
            r0, c0_, r1, c1_ = rng.integers(0, size, size=4)
            rr, cc = draw.line(int(r0), int(c0_), int(r1), int(c1_))
        else:
            rr, cc = draw.ellipse_perimeter(
                int(rng.integers(0, size)),
                int(rng.integers(0, size)),
                int(rng.integers(2, size // 6)),
                int(rng.integers(2, size // 6)),
                shape=(size, size),
            )
        img[rr, cc] = colour
    img += rng.normal(0, 0.04, size=img.shape)
    return img


def make_shapes(
    n: int,
    seed: int,
    size: int = 64,
    n_classes: int = 4,
    id_prefix: str = "shape",
) -> Dataset:
    """Generate ``n`` images (classes balanced, order shuffled) of ``size``×``size`` RGB pixels."""
    if not 2 <= n_classes <= len(SHAPES):
        raise ValueError(f"n_classes must be in 2..{len(SHAPES)}")
    if size < 24:
        raise ValueError("size must be at least 24 pixels")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes)
    samples = []
    for i, label in enumerate(labels):
        img = _background(rng, size)
        r = int(rng.integers(size * 0.14, size * 0.24 + 1))
        margin = r + 2
        cy, cx = (int(v) for v in rng.integers(margin, size - margin, size=2))
        mask = _shape_mask(SHAPES[label], size, cy, cx, r)
        bg_mean = img[mask].mean(axis=0)
        for _ in range(20):  # an object colour that stands out from what is behind it
            colour = rng.uniform(0, 1, size=3)
            if np.abs(colour - bg_mean).sum() > 0.6:
                break
        texture = rng.normal(0, 0.05, size=(int(mask.sum()), 3))
        img[mask] = colour[None, :] + texture
        img = np.clip(img, 0, 1).astype(np.float32)
        samples.append(Sample(image=img, label=int(label), region=mask, id=f"{id_prefix}-{i:05d}"))
    return Dataset(samples, list(SHAPES[:n_classes]))
