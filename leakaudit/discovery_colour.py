"""Colour-first tell discovery: a tell that moves is still one colour, wherever it is.

Place-first discovery (``discovery.discover_tells``) looks for a hotspot at a consistent place, so
a sticker or watermark that sits somewhere else in every image is invisible to it. Here the order
is reversed — first *what colour* the model looks at, then *where* that colour is in each image:

1. Per image, the top ``top_fraction`` of pixels by (lightly smoothed) positive attribution outside
   the dilated object region; a histogram of their quantised colours, weighted by attribution.
   The image "attends" colour bin c when c holds at least ``min_colour_weight`` of that weight.
2. Per image and bin, the compact blobs of that bin outside the object: connected components of
   ``min_pixels`` up to ``max_blob_fraction`` of the image (a background band of one colour is
   not a blob; a sticker, logo, glyph run or frame is).
3. Per class k and bin c: score = Wilson lower bound of P(attends c AND has a c-blob | class k)
   − P(has a c-blob | other classes) — the same Youden-style score as place-first suspects (see
   ``SuspectedTell.score``): high only when the colour is both *used* and *class-specific*. An
   object's own colour shared by all classes, or random clutter, scores near zero.
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

Box = tuple[int, int, int, int]


@dataclass
class ColourCandidate:
    """One class's best tell colour: the bin, its mean RGB, and per-image boxes of its blobs."""

    cls: int
    colour_bin: int
    colour: tuple[float, float, float]
    n_appear: int
    n_class: int
    other_share: float
    score: float
    boxes: dict[int, Box]  # image index → box of the blob(s), on every class image that has one
    blob_area: float  # median blob area (px) where the model attended it
    examples: list[int]


def _blobs(codes_i: np.ndarray, allowed_i: np.ndarray, cbin: int, lo: int, hi: int):
    """Labels and sizes of the compact components of ``cbin`` (``lo``..``hi`` pixels)."""
    lab, k = ndimage.label((codes_i == cbin) & allowed_i)
    if k == 0:
        return lab, np.zeros(0, dtype=np.int64), []
    sizes = np.bincount(lab.ravel(), minlength=k + 1)[1:]
    keep = [j + 1 for j in range(k) if lo <= sizes[j] <= hi]
    return lab, sizes, keep


def _box_of(mask: np.ndarray, grow: int) -> Box:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return (
        max(0, int(xs.min()) - grow),
        max(0, int(ys.min()) - grow),
        min(w, int(xs.max()) + 1 + grow),
        min(h, int(ys.max()) + 1 + grow),
    )


def colour_candidates(
    attr: np.ndarray,
    images: np.ndarray,
    codes: np.ndarray,
    excl: np.ndarray,
    labels: np.ndarray,
    members_of: dict[int, np.ndarray],
    valid: np.ndarray,
    wilson_lower,
    top_fraction: float = 0.03,
    min_colour_weight: float = 0.15,
    min_pixels: int = 4,
    max_blob_fraction: float = 0.08,
    bins_per_class: int = 3,
    n_examples: int = 6,
) -> list[ColourCandidate]:
    """Per class, the best colour-first candidate (see the module docstring); ``attr`` are
    non-negative maps normalised to unit mass, ``excl`` the dilated object regions."""
    n, h, w = attr.shape
    outside = attr * ~excl
    smooth = ndimage.gaussian_filter(outside, sigma=(0, 1, 1))
    n_top = max(min_pixels, int(round(top_fraction * h * w)))
    n_bins = int(codes.max()) + 1 if codes.size else 1
    flat = smooth.reshape(n, -1)
    top = np.argsort(-flat, axis=1, kind="stable")[:, :n_top]
    weights = np.take_along_axis(flat, top, axis=1)
    cols = np.take_along_axis(codes.reshape(n, -1), top, axis=1)
    hist = np.zeros((n, n_bins))
    for i in range(n):
        hist[i] = np.bincount(cols[i], weights=weights[i], minlength=n_bins)
    tot = hist.sum(1, keepdims=True)
    hist = hist / np.where(tot > 0, tot, 1.0)
    attends = hist >= min_colour_weight
    allowed = ~excl
    lo, hi = min_pixels, max(min_pixels, int(max_blob_fraction * h * w))
    topmask = np.zeros((n, h * w), dtype=bool)
    np.put_along_axis(topmask, top, True, axis=1)
    topmask = topmask.reshape(n, h, w)

    out: list[ColourCandidate] = []
    classes = sorted(members_of)
    for k in classes:
        members = members_of[k]
        if len(members) < 3:
            continue
        share = attends[members].mean(0)
        for cbin in np.argsort(-share, kind="stable")[:bins_per_class]:
            cbin = int(cbin)
            if share[cbin] * len(members) < 3:
                break
            cand = _candidate(
                k, cbin, members, labels, valid, codes, allowed, attends, smooth, topmask,
                images, lo, hi, wilson_lower, n_examples,
            )  # fmt: skip
            if cand is not None:
                out.append(cand)
    best: dict[int, ColourCandidate] = {}
    for c in out:
        if c.cls not in best or c.score > best[c.cls].score:
            best[c.cls] = c
    return [best[k] for k in sorted(best)]


def _candidate(
    k, cbin, members, labels, valid, codes, allowed, attends, smooth, topmask, images, lo, hi,
    wilson_lower, n_examples,
) -> ColourCandidate | None:  # fmt: skip
    """Blobs of ``cbin`` in every image; class-k images where the model looks at one."""
    n = len(labels)
    has_blob = np.zeros(n, dtype=bool)
    hit_blob = np.zeros(n, dtype=bool)
    boxes: dict[int, Box] = {}
    areas: list[int] = []
    mass: dict[int, float] = {}
    for i in np.flatnonzero(valid):
        lab, sizes, keep = _blobs(codes[i], allowed[i], cbin, lo, hi)
        if not keep:
            continue
        has_blob[i] = True
        if labels[i] != k:
            continue
        # the blob(s) the model looks at: touching its top pixels, else the one with most mass
        near = ndimage.binary_dilation(topmask[i], iterations=1)
        touched = [j for j in keep if (near & (lab == j)).any()]
        if not touched:
            touched = [max(keep, key=lambda j: float(smooth[i][lab == j].sum()))]
        chosen = np.isin(lab, touched)
        boxes[int(i)] = _box_of(chosen, grow=1)
        if attends[i, cbin] and any((near & (lab == j)).any() for j in touched):
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
    px = np.concatenate([images[i][codes[i] == cbin] for i in hit])
    colour = tuple(float(v) for v in px.mean(axis=0))
    order = sorted(mass, key=lambda i: (-mass[i], i))[:n_examples]
    return ColourCandidate(
        k, cbin, colour, n_appear, len(members), other_share, score, boxes,  # type: ignore[arg-type]
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
            if (
                c.colour_bin not in {m.colour_bin for m in g}
                and 0.5 <= ratio <= 2.0
                and c.score >= 0.5 * lead.score
            ):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups
