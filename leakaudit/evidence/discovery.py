"""Tell discovery without tell annotations: where, in what colour, and for which classes.

A tell is a *class-specific* thing the model looks at *outside the object*. Three views of the
attribution maps look for it, none of which is told where a tell is or what colour it has:

(a) Hotspots — per class, the mean share of attribution outside the (slightly dilated) object
    region. Objects sit at random positions, so an honest model's outside attribution averages to
    a diffuse haze; a tell at a fixed place shows up as a peak.
(b) SpRAy — spectral relevance analysis (Lapuschkin et al. 2019, "Unmasking Clever Hans
    predictors and assessing what machines really learn", Nat. Commun. 10:1096): downsampled maps
    of one class, a symmetric kNN affinity graph, spectral embedding of its normalised Laplacian
    and k-means (Ng, Jordan & Weiss 2001), k picked at the largest eigengap. A tell on only part of
    a class forms its own cluster, whose mean map has a sharper peak than the class mean. Pure
    numpy/scipy (scikit-learn is not a core dependency).
(c) Colours — colours quantised to ``levels`` per channel (64 bins by default); the dominant
    colour under a candidate's attribution. Backgrounds vary, so only a planted thing gives the
    *same* colour bin in the same place across a class's images.
(d) Colour first (``discovery_colour``) — for tells that move: the colours under each image's
    top-attributed pixels, wherever they are; a class-specific, attended colour becomes a
    suspect with its own box in every image (``SuspectedTell.boxes``).

Every candidate box is refined to where its colour sits in at least half of the class's images,
then scored (see ``SuspectedTell.score``) and candidates for different classes at the same place
are merged into one suspect. Output: suspects ranked by score. ``suspected_tell_mask`` turns one
into a mask for the behavioural removal/swap tests, which are the actual evidence — discovery
only says where to look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from leakaudit.evidence.boxes import Box, _intersection, box_area, box_iou, same_place  # noqa: F401
from leakaudit.evidence.discovery_colour import (
    ColourCandidate,
    colour_candidates,
    merge_colour_candidates,
    quantise_colours,
)
from leakaudit.evidence.discovery_spray import SprayResult, kmeans, spray  # noqa: F401 (kmeans re-exported)
from leakaudit.evidence.stats import wilson_lower

# A suspect is "strong" at score ≥ 0.5: in a majority-beating share of a class's images the model
# attends to a same-coloured patch there, beyond how often other classes show that colour there.
# Clean models on our synthetic data score ≤ 0.1 (random background colours rarely repeat in one
# place); a fully poisoned class of 50 images scores ≈ 0.9; a 50 %-prevalence tell lands near
# (below) the line and shows up as a weak suspect.
STRONG_SCORE = 0.5


@dataclass
class SuspectedTell:
    """A place, colour and set of classes that look like a tell.

    ``score`` is, for the strongest affected class k, P(model attends to the box AND the box shows
    colour c | class k) − P(box shows colour c | other classes): a Youden-style index that is high
    only when the colour is both *used* by the model and *predictive* of the class. The first
    share enters as its 95 % Wilson lower bound, so small classes need more consistent evidence.
    ``share`` is the pooled share of the affected classes' images where it appears; ``colours``
    gives each affected class its own dominant colour (a planted tell usually has one colour per
    class)."""

    box: Box
    colour: tuple[float, float, float]
    classes: list[int]
    share: float
    score: float
    examples: list[int]
    colours: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    source: str = "hotspot"
    # colour-first suspects: image index → that image's box of the suspect (empty: ``box`` in
    # every image, as for place-first suspects)
    boxes: dict[int, Box] = field(default_factory=dict)

    @property
    def strong(self) -> bool:
        return self.score >= STRONG_SCORE

    @property
    def moves(self) -> bool:
        """Found colour-first: its place differs per image (see ``boxes``)."""
        return bool(self.boxes)


@dataclass
class DiscoveryResult:
    suspects: list[SuspectedTell]
    hotspots: dict[int, np.ndarray]  # class → mean outside-attribution share per pixel
    contrast: dict[int, np.ndarray]  # class hotspot − mean of the other classes' hotspots
    spray: dict[int, SprayResult]
    n_used: int

    @property
    def strong(self) -> list[SuspectedTell]:
        return [s for s in self.suspects if s.strong]


# ---------------------------------------------------------------- small numpy building blocks


def suspected_tell_mask(suspect: SuspectedTell | Box, image_shape: Sequence[int]) -> np.ndarray:
    """Boolean HW mask of a suspect's box (clipped to the image), for removal/swap tests."""
    box = suspect.box if isinstance(suspect, SuspectedTell) else suspect
    h, w = int(image_shape[0]), int(image_shape[1])
    x0, y0, x1, y1 = box
    mask = np.zeros((h, w), dtype=bool)
    mask[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] = True
    return mask


def suspect_boxes(suspect: SuspectedTell, n: int) -> list[Box | None]:
    """Per image (of ``n``), the suspect's box there, or None where it has none."""
    if suspect.moves:
        return [suspect.boxes.get(i) for i in range(n)]
    return [suspect.box] * n


def moving_suspect_samples(samples: Sequence, suspect: SuspectedTell) -> tuple[list, list, list]:
    """The samples the removal and swap tests need for a colour-first (moving) suspect.

    Returns (indices, removal samples, swap samples): removal covers each affected-class image's
    own box (``tell`` = that box's mask); swap paints into each image's own box where it has one,
    else into the boxes found elsewhere in turn (a moving tell has no home place, so any place
    where it was seen will do). Images are the samples' own, unchanged."""
    boxes = suspect_boxes(suspect, len(samples))
    idx, removal = [], []
    for i, (s, b) in enumerate(zip(samples, boxes, strict=True)):
        if b is not None and s.label in suspect.classes:
            idx.append(i)
            removal.append(s.with_(tell=suspected_tell_mask(b, s.shape), tell_box=b))
    seen = [b for b in boxes if b is not None]
    swap = [
        s.with_(tell_box=b if b is not None else seen[i % len(seen)])
        for i, (s, b) in enumerate(zip(samples, boxes, strict=True))
    ] if seen else []  # fmt: skip
    return idx, removal, swap


def _peak_boxes(heat: np.ndarray, max_boxes: int, rel: float = 0.5) -> list[Box]:
    """Bounding boxes of the strongest connected components above ``rel`` × max (smoothed)."""
    smooth = ndimage.gaussian_filter(heat, sigma=1.0)
    if not np.isfinite(smooth).all() or smooth.max() <= 0:
        return []
    lab, k = ndimage.label(smooth >= rel * smooth.max())
    if k == 0:
        return []
    mass = ndimage.sum(smooth, lab, index=np.arange(1, k + 1))
    boxes = []
    slices = ndimage.find_objects(lab)
    for j in np.argsort(-mass, kind="stable")[:max_boxes]:
        sl = slices[j]
        boxes.append((sl[1].start, sl[0].start, sl[1].stop, sl[0].stop))
    return boxes


# ---------------------------------------------------------------- candidate evaluation


@dataclass
class _Candidate:
    cls: int
    box: Box
    colour_bin: int
    colour: tuple[float, float, float]
    share: float
    other_share: float
    n_appear: int
    n_class: int
    examples: list[int]
    source: str

    @property
    def score(self) -> float:
        return max(0.0, wilson_lower(self.n_appear, self.n_class) - self.other_share)


def _refine_box(freq: np.ndarray, box: Box, pad: int, min_freq: float) -> Box:
    """Shrink/grow ``box`` to the component of ``freq`` ≥ max(min_freq, ½ peak) near it."""
    h, w = freq.shape
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    window = np.zeros_like(freq)
    window[y0:y1, x0:x1] = freq[y0:y1, x0:x1]
    peak = window.max()
    if peak < min_freq:
        return box
    lab, _ = ndimage.label(window >= max(min_freq, 0.5 * peak))
    py, px = np.unravel_index(int(np.argmax(window)), window.shape)
    sl = ndimage.find_objects(lab)[lab[py, px] - 1]
    return (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)


def _evaluate(
    cls: int,
    box: Box,
    source: str,
    attr: np.ndarray,
    outside: np.ndarray,
    codes: np.ndarray,
    images: np.ndarray,
    members: np.ndarray,
    others: np.ndarray,
    enrichment: float,
    min_colour_share: float,
    n_examples: int,
) -> _Candidate | None:
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0 or not len(members):
        return None
    # (c) dominant colour under the class's outside attribution in the box
    w = outside[members, y0:y1, x0:x1]
    c = codes[members, y0:y1, x0:x1]
    wsum = w.sum(axis=(1, 2), keepdims=True)
    w = w / np.where(wsum > 0, wsum, 1.0)
    hist = np.bincount(c.ravel(), weights=w.ravel(), minlength=int(codes.max()) + 1)
    if hist.max() <= 0:
        return None
    cbin = int(np.argmax(hist))
    freq = (codes[members] == cbin).mean(axis=0)
    box = _refine_box(freq, box, pad=3, min_freq=0.3)
    x0, y0, x1, y1 = box
    h, wd = attr.shape[1:]
    # attention is measured on the box grown by 1 px: gradients peak on a patch's edges
    ax0, ay0, ax1, ay1 = max(0, x0 - 1), max(0, y0 - 1), min(wd, x1 + 1), min(h, y1 + 1)
    a_area = (ax1 - ax0) * (ay1 - ay0) / (h * wd)
    in_box = attr[members, ay0:ay1, ax0:ax1].sum(axis=(1, 2))
    attended = in_box / a_area >= enrichment
    present_k = (codes[members, y0:y1, x0:x1] == cbin).mean(axis=(1, 2)) >= min_colour_share
    appears = attended & present_k
    if len(others):
        present_o = (codes[others, y0:y1, x0:x1] == cbin).mean(axis=(1, 2)) >= min_colour_share
        other_share = float(present_o.mean())
    else:
        other_share = 0.0
    hit = members[appears]
    if len(hit):
        px = images[hit, y0:y1, x0:x1][codes[hit, y0:y1, x0:x1] == cbin]
        colour = tuple(float(v) for v in px.mean(axis=0))
    else:
        colour = tuple(float(v) for v in images[members, y0:y1, x0:x1].reshape(-1, 3).mean(0))
    order = np.argsort(-in_box[appears], kind="stable")[:n_examples]
    return _Candidate(
        cls,
        box,
        cbin,
        colour,  # type: ignore[arg-type]
        float(appears.mean()),
        other_share,
        int(appears.sum()),
        len(members),
        [int(i) for i in hit[order]],
        source,
    )


def discover_tells(
    maps: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray | None = None,
    regions: np.ndarray | Sequence[np.ndarray | None] | None = None,
    seed: int = 0,
    levels: int = 4,
    dilate: int = 2,
    enrichment: float = 2.0,
    min_colour_share: float = 0.25,
    boxes_per_map: int = 2,
    max_suspects: int = 10,
    n_examples: int = 6,
    use_spray: bool = True,
    colour_first: bool = True,
) -> DiscoveryResult:
    """Rank suspected tells from maps (N,H,W), images (N,H,W,3) in [0,1] and labels (N,).

    ``predictions``: when given, only correctly predicted images of a class are analysed (a tell
    explains a *correct* shortcut prediction), unless fewer than 5 are. ``regions``: object masks
    (dilated by ``dilate`` px so object edges do not count as outside); without them everything
    counts as outside. ``enrichment``: a box is "attended" in an image when its share of the
    positive attribution is at least this multiple of its area share. ``min_colour_share``: a box
    "shows" a colour when at least this share of its pixels fall in that colour bin.
    ``colour_first``: also look for tells that move (``discovery_colour``); a colour suspect
    that sits where a place-first suspect already is, is left out (the same tell)."""
    # float64 copies, then worked on in place: 1 000 images at 64 px cost ~30 MB a plane
    attr = np.array(maps, dtype=np.float64)
    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    n, h, w = attr.shape
    if images.shape[:3] != (n, h, w) or len(labels) != n:
        raise ValueError("maps, images and labels must agree in N, H and W")
    np.nan_to_num(attr, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(attr, 0, None, out=attr)
    mass = attr.sum(axis=(1, 2))
    valid = mass > 0
    attr /= np.where(mass > 0, mass, 1.0)[:, None, None]
    excl = np.zeros((n, h, w), dtype=bool)
    if regions is not None:
        struct = ndimage.generate_binary_structure(2, 1)
        for i, r in enumerate(regions):
            if r is not None and np.asarray(r).any():
                excl[i] = ndimage.binary_dilation(np.asarray(r, bool), struct, iterations=dilate)
    outside = attr * ~excl
    codes = quantise_colours(images, levels)

    classes = [int(k) for k in np.unique(labels)]
    correct = np.ones(n, dtype=bool) if predictions is None else np.asarray(predictions) == labels
    members_of: dict[int, np.ndarray] = {}
    for k in classes:
        base = valid & (labels == k)
        chosen = base & correct
        members_of[k] = np.flatnonzero(chosen if chosen.sum() >= 5 else base)

    hotspots = {
        k: outside[members_of[k]].mean(0) if len(members_of[k]) else np.zeros((h, w))
        for k in classes
    }
    contrast = {}
    for k in classes:
        rest = [hotspots[j] for j in classes if j != k]
        contrast[k] = hotspots[k] - (np.mean(rest, axis=0) if rest else 0.0)

    sprays: dict[int, SprayResult] = {}
    candidates: list[_Candidate] = []
    for k in classes:
        members = members_of[k]
        if not len(members):
            continue
        others = np.flatnonzero(valid & (labels != k))
        proposals = [(b, "hotspot") for b in _peak_boxes(hotspots[k], boxes_per_map)]
        proposals += [(b, "contrast") for b in _peak_boxes(np.clip(contrast[k], 0, None), 1)]
        if use_spray:
            sp = spray(outside[members], seed=seed)
            sprays[k] = sp
            for j in range(sp.n_clusters):
                sel = members[sp.labels == j]
                if len(sel) >= max(3, 0.1 * len(members)):
                    heat = outside[sel].mean(0)
                    proposals += [(b, "spray") for b in _peak_boxes(heat, 1)]
        for box, source in proposals:
            cand = _evaluate(
                k,
                box,
                source,
                attr,
                outside,
                codes,
                images,
                members,
                others,
                enrichment,
                min_colour_share,
                n_examples,
            )
            if cand is not None:
                candidates.append(cand)

    suspects = _merge(candidates)
    if colour_first:
        cands = colour_candidates(
            attr, images, codes, excl, labels, members_of, valid,
            n_examples=n_examples,
        )  # fmt: skip
        for group in merge_colour_candidates(cands):
            sus = _colour_suspect(group)
            if sus.score <= 0:  # a colour other classes show as often: nothing to test
                continue
            if not any(_same_tell(sus, p) for p in suspects if not p.moves):
                suspects.append(sus)
        suspects.sort(key=lambda s: (-s.score, -s.share, -box_area(s.box), s.box))
    return DiscoveryResult(suspects[:max_suspects], hotspots, contrast, sprays, int(valid.sum()))


def _group_suspect(
    group: list, box: Box, source: str, shares: list[float], boxes: dict | None = None
) -> SuspectedTell:
    """One suspect from candidates of several classes at one tell (the first leads): the
    place and colour finders' groups, with each member's share of its class as measured."""
    lead = group[0]
    n_appear = sum(m.n_appear for m in group)
    n_class = sum(m.n_class for m in group)
    return SuspectedTell(
        box=box,
        colour=lead.colour,
        classes=sorted(m.cls for m in group),
        share=n_appear / n_class if n_class else 0.0,
        score=lead.score,
        examples=[i for m in group for i in m.examples],
        colours={m.cls: m.colour for m in group},
        per_class={
            m.cls: {
                "share": sh,
                "other_share": m.other_share,
                "score": m.score,
                "n": float(m.n_class),
            }
            for m, sh in zip(group, shares, strict=True)
        },
        source=source,
        boxes=boxes or {},
    )


def _colour_suspect(group: list[ColourCandidate]) -> SuspectedTell:
    lead = group[0]
    boxes = {i: b for m in group for i, b in sorted(m.boxes.items())}
    first = lead.examples[0] if lead.examples else min(lead.boxes)
    shares = [m.n_appear / m.n_class for m in group]
    return _group_suspect(group, lead.boxes[first], "colour", shares, dict(sorted(boxes.items())))


def _same_tell(moving: SuspectedTell, fixed: SuspectedTell) -> bool:
    """A colour suspect whose boxes sit at a place suspect's box (IoU ≥ 0.5: not merely inside
    a large, diffuse one) in ≥ 80 % of its images, for classes that suspect already covers,
    adds nothing."""
    if not set(moving.classes) <= set(fixed.classes) or not moving.boxes:
        return False
    at = [box_iou(b, fixed.box) >= 0.5 for b in moving.boxes.values()]
    return float(np.mean(at)) >= 0.8


def _merge(cands: list[_Candidate]) -> list[SuspectedTell]:
    """Best candidate per (class, place); then one suspect per place across classes."""
    # equal scores: the larger box first, so the kept box covers all of a nested pair
    cands = sorted(cands, key=lambda c: (-c.score, c.cls, -box_area(c.box), c.box))
    per_class: list[_Candidate] = []
    for c in cands:
        if not any(p.cls == c.cls and same_place(p.box, c.box) for p in per_class):
            per_class.append(c)
    groups: list[list[_Candidate]] = []
    for c in per_class:
        for g in groups:
            # same place, new class, and not much weaker than the group's lead: a weak
            # candidate must not dilute a strong suspect's share (it stays on its own)
            here = same_place(g[0].box, c.box)
            if here and any(m.cls == c.cls for m in g):
                break  # a weaker second box of this class on a place it already has: the same tell
            if here and c.score >= 0.5 * g[0].score:
                g.append(c)
                break
        else:
            groups.append([c])
    out = [_group_suspect(g, g[0].box, g[0].source, [m.share for m in g]) for g in groups]
    out.sort(key=lambda s: (-s.score, -s.share, -box_area(s.box), s.box))
    return out
