"""Colour-first tell discovery: a tell that moves is still one colour, wherever it is.

Place-first discovery (``discovery.discover_tells``) looks for a hotspot at a consistent place, so
a sticker or watermark that sits somewhere else in every image is invisible to it. Here the order
is reversed — first *what colour* the model looks at, then *where* that colour is in each image:

1. Per image, the top ``top_fraction`` of pixels by (lightly smoothed) positive attribution outside
   the dilated object region; a histogram of their quantised colours, weighted by attribution.
   Bins holding ≥ ``min_colour_weight`` of that weight in many of a class's images propose a
   colour: the median of those pixels. From here on a pixel "has" the colour when it lies within
   ``tolerance`` of it per channel (in the image or its 3×3 mean), so bin edges, JPEG and noise
   do not split one tell into several colours.
2. Per image, the compact blobs of that colour outside the object: connected components of
   ``min_pixels`` up to ``max_blob_fraction`` of the image (a background band of one colour is
   not a blob; a sticker, logo, glyph run or frame is).
3. Per class k and colour c: score = Wilson lower bound of P(the model looks at a c-blob | class
   k) − P(has a c-blob | other classes) — the same Youden-style score as place-first suspects
   (see ``SuspectedTell.score``): high only when the colour is both *used* and
   *class-specific*. An object's own colour shared by all classes, or clutter, scores near 0.
4. Per image, the suspect's mask is the bounding box (grown by 1 px: gradients peak on edges) of
   the c-blob(s) nearest the image's attribution, on every image of the affected classes that
   has one — also those where the model happened to look elsewhere, since the removal test
   asks what covering the colour *wherever it is* does.

Classes whose best colours are of similar blob size are merged into one suspect with one colour
per class (a planted tell usually gives every class its own colour), so the swap test can paste
class B's colour into class A's tell. What it cannot see (documented in docs/validity.md): a
tell in the object's own colour, a global colour cast (no compact blob), and textures whose
pixels scatter over many colour bins (noise patches are found only when their mean colour
dominates one bin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from leakaudit.evidence.stats import wilson_lower

Box = tuple[int, int, int, int]


@dataclass
class ColourCandidate:
    """One class's best tell colour: its mean RGB and per-image boxes of its blobs."""

    cls: int
    colour_bin: int  # unused (−1): colours are matched by distance, not by bin
    colour: tuple[float, float, float]
    n_appear: int
    n_class: int
    other_share: float
    score: float
    boxes: dict[int, Box]  # image index → box of the blob(s), on every class image that has one
    blob_area: float  # median blob area (px) where the model attended it
    examples: list[int]


def _box_of(mask: np.ndarray, grow: int) -> Box:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (
        max(0, int(xs.min()) - grow),
        max(0, int(ys.min()) - grow),
        min(w, int(xs.max()) + 1 + grow),
        min(h, int(ys.max()) + 1 + grow),
    )


class _Blurred:
    """The 3×3 mean of image i, computed when asked (a stacked copy of 10 000 images would
    take a gigabyte)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __getitem__(self, i: int) -> np.ndarray:
        return ndimage.uniform_filter(self.images[i], size=(3, 3, 1), mode="nearest")


def quantise_colours(images: np.ndarray, levels: int = 4) -> np.ndarray:
    """(..., 3) in [0, 1] → (...) bin codes in 0..levels³−1, one channel at a time: a stack of
    images then needs one plane of temporaries, not three (and no float copy)."""
    images = np.asarray(images)
    codes = np.zeros(images.shape[:-1], dtype=np.int64)
    for c in range(3):
        codes *= levels
        codes += np.clip((images[..., c] * levels).astype(np.int64), 0, levels - 1)
    return codes


def colour_candidates(
    attr: np.ndarray,
    images: np.ndarray,
    codes: np.ndarray,
    excl: np.ndarray,
    labels: np.ndarray,
    members_of: dict[int, np.ndarray],
    valid: np.ndarray,
    levels: int = 4,
    top_fraction: float = 0.03,
    min_colour_weight: float = 0.15,
    tolerance: float = 0.125,
    min_pixels: int = 4,
    max_blob_fraction: float = 0.08,
    bins_per_class: int = 3,
    n_examples: int = 6,
) -> list[ColourCandidate]:
    """Per class, the best colour-first candidate (see the module docstring); ``attr`` are
    non-negative maps normalised to unit mass, ``excl`` the dilated object regions, ``codes``
    the images quantised to ``levels`` per channel.

    Bins only *propose* colours; matching is by distance: a pixel has the colour when every
    channel is within ``tolerance`` (half a bin at 4 levels) of the proposed centre, in the
    image itself or in its 3×3 mean (which averages a noise texture and JPEG ringing to its
    mean colour, while thin text strokes survive in the image itself). A colour on a bin edge,
    a JPEG-shifted or a noisy one is still one colour."""
    n, h, w = attr.shape
    outside = attr * ~excl
    smooth = ndimage.gaussian_filter(outside, sigma=(0, 1, 1))
    blurred = _Blurred(images)
    n_top = max(min_pixels, int(round(top_fraction * h * w)))
    flat = smooth.reshape(n, -1)
    top = np.argsort(-flat, axis=1, kind="stable")[:, :n_top]
    weights = np.take_along_axis(flat, top, axis=1)
    wsum = weights.sum(1, keepdims=True)
    weights = weights / np.where(wsum > 0, wsum, 1.0)
    topmask = np.zeros((n, h * w), dtype=bool)
    np.put_along_axis(topmask, top, True, axis=1)
    topmask = topmask.reshape(n, h, w)
    n_bins = levels**3
    views = []  # (top-pixel colours, their bin codes) in the image and in its 3×3 mean
    rgb = images.reshape(n, -1, 3)[np.arange(n)[:, None], top]
    views.append((rgb, np.take_along_axis(codes.reshape(n, -1), top, axis=1)))
    rgb = np.stack([blurred[i].reshape(-1, 3)[top[i]] for i in range(n)]) if n else rgb
    views.append((rgb, quantise_colours(rgb, levels)))
    lo, hi = min_pixels, max(min_pixels, int(max_blob_fraction * h * w))
    ctx = (labels, valid, images, blurred, ~excl, smooth, topmask, weights, views[0][0],
           min_colour_weight)  # fmt: skip
    best: dict[int, ColourCandidate] = {}
    for k in sorted(members_of):
        members = members_of[k]
        if len(members) < 3:
            continue
        centres = []
        for rgb, cols in views:
            hist = np.zeros((len(members), n_bins))
            for r, i in enumerate(members):
                hist[r] = np.bincount(cols[i], weights=weights[i], minlength=n_bins)
            share = (hist >= min_colour_weight).mean(0)
            for cbin in np.argsort(-share, kind="stable")[:bins_per_class]:
                if share[cbin] * len(members) < 3:
                    break
                px = np.concatenate([rgb[i][cols[i] == cbin] for i in members])
                centres.append(np.median(px, axis=0))
        for centre in centres:
            cand = _candidate(k, centre, members, tolerance, lo, hi, ctx, n_examples)
            if cand is not None and (k not in best or cand.score > best[k].score):
                best[k] = cand
    return [best[k] for k in sorted(best)]


def _candidate(
    k: int,
    centre: np.ndarray,
    members: np.ndarray,
    tol: float,
    lo: int,
    hi: int,
    ctx: tuple,
    n_examples: int,
) -> ColourCandidate | None:
    """Blobs of the colour in every image; class-k images where the model looks at one."""
    labels, valid, images, blurred, allowed, smooth, topmask, weights, top_rgb, min_w = ctx
    n = len(labels)
    has_blob = np.zeros(n, dtype=bool)
    hit_blob = np.zeros(n, dtype=bool)
    boxes: dict[int, Box] = {}
    areas: list[int] = []
    mass: dict[int, float] = {}
    near_c: dict[int, np.ndarray] = {}  # per image, not stacked: audits can hold 10 000 images

    def has_colour(i: int) -> np.ndarray:
        near = np.abs(images[i] - centre).max(-1) <= tol
        return near | (np.abs(blurred[i] - centre).max(-1) <= tol)

    for i in np.flatnonzero(valid):
        near_c[int(i)] = has_colour(int(i)) & allowed[i]
        lab, k_comp = ndimage.label(near_c[int(i)])
        if k_comp == 0:
            continue
        sizes = np.bincount(lab.ravel(), minlength=k_comp + 1)[1:]
        keep = [j + 1 for j in range(k_comp) if lo <= sizes[j] <= hi]
        if not keep:
            continue
        has_blob[i] = True
        if labels[i] != k:
            continue
        # the blob(s) the model looks at: touching its top pixels, else the one with most mass
        near = ndimage.binary_dilation(topmask[i], iterations=1)
        touched = [j for j in keep if (near & (lab == j)).any()]
        looked = bool(touched)
        if not touched:
            touched = [max(keep, key=lambda j: float(smooth[i][lab == j].sum()))]
        chosen = np.isin(lab, touched)
        boxes[int(i)] = _box_of(chosen, grow=1)
        on_colour = float(weights[i][np.abs(top_rgb[i] - centre).max(-1) <= tol].sum())
        on_blob = float(smooth[i][chosen].sum()) / max(float(smooth[i].sum()), 1e-12)
        if looked and max(on_colour, on_blob) >= min_w:
            hit_blob[i] = True
            areas.append(int(sizes[np.asarray(touched) - 1].sum()))
            mass[int(i)] = float(smooth[i][chosen].sum())
    appear = hit_blob[members]
    n_appear = int(appear.sum())
    if n_appear < 3:
        return None
    others = np.flatnonzero(valid & (labels != k))
    other_share = float(has_blob[others].mean()) if len(others) else 0.0
    score = max(0.0, wilson_lower(n_appear, len(members)) - other_share)
    hit = members[appear]
    px = np.concatenate([images[i][near_c[int(i)]] for i in hit])
    colour = tuple(float(v) for v in px.mean(axis=0))
    order = sorted(mass, key=lambda i: (-mass[i], i))[:n_examples]
    return ColourCandidate(
        k, -1, colour, n_appear, len(members), other_share, score, boxes,  # type: ignore[arg-type]
        float(np.median(areas)), order,
    )  # fmt: skip


def merge_colour_candidates(cands: list[ColourCandidate]) -> list[list[ColourCandidate]]:
    """Group classes into one suspect when their colours differ and their blobs are of similar
    size (within 2×) and not much weaker than the lead (≥ half its score); strongest first."""
    cands = sorted(cands, key=lambda c: (-c.score, c.cls))
    groups: list[list[ColourCandidate]] = []
    for c in cands:
        for g in groups:
            lead = g[0]
            ratio = c.blob_area / lead.blob_area if lead.blob_area > 0 else np.inf
            far = all(np.abs(np.subtract(c.colour, m.colour)).max() > 0.1 for m in g)
            if far and 0.5 <= ratio <= 2.0 and c.score >= 0.5 * lead.score:
                g.append(c)
                break
        else:
            groups.append([c])
    return groups
