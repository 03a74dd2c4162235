"""The bounded view of a dataset that tell discovery works on, and the way back to full size.

Discovery looks at every image's map and pixels together (per-class means, SpRAy clustering,
colour statistics), so its memory grows with images × pixels. At 224 px a float64 copy of 1 000
images and maps alone is ~1.6 GB. It therefore works at most ``DISCOVERY_SIDE`` px a side (the
audit's compact maps, area averaged; images and object masks reduced to the same grid) and on at
most ``MAX_IMAGES`` images (a seeded, class-stratified sample). The synthetic scenario its
thresholds were calibrated on is 48–64 px, so at ≤ 64 px nothing changes: the same images and
maps, at full resolution. What it loses: a tell must keep ~2 px at 64 px, i.e. at least ~3 % of
the image side (0.1 % of its area) — the smallest tell calibrated (4 px at 48 px) is 8 %.

Suspects found on the view are mapped back (``to_full``): boxes scaled to full-size pixels and
grown by one reduced pixel a side (a tell's edge pixels are blended with their surroundings on
the reduced grid, so its colour test leaves them out), image indices back to the dataset's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from leakaudit.data.samples import Dataset
from leakaudit.data.spill import SpilledStack
from leakaudit.evidence.discovery import Box, SuspectedTell
from leakaudit.evidence.stats import stratified_sample

DISCOVERY_SIDE = 64  # model_audit.COMPACT_SIDE is this: the compact maps are discovery's view
# 1 000 × 64² px: ~0.3 GB of discovery's working arrays (the step the audit's peak takes in
# discovery at 1 000 images, 224 px). Discovery's thresholds were calibrated on audits of at
# most 200 images (the demo's and the power sweep's n_eval), so a stratified 1 000 is more than
# they ever had; at 2 000 the step alone doubles, past the issue's "10 000 images ≤ 1.3× the
# peak for 1 000".
MAX_IMAGES = 1000


def reduced_shape(shape: tuple[int, int], side: int = DISCOVERY_SIDE) -> tuple[int, int]:
    """(h, w) with max(h, w) ≤ ``side``, the aspect ratio kept (as the compact maps do)."""
    h, w = int(shape[0]), int(shape[1])
    if max(h, w) <= side:
        return h, w
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def area_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) float arrays area-averaged to ``size`` (float32)."""
    x = np.asarray(x, dtype=np.float32)
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t[:, None] if x.ndim == 3 else t.permute(0, 3, 1, 2)
    out = torch.nn.functional.interpolate(t, size=size, mode="area")
    return (out[:, 0] if x.ndim == 3 else out.permute(0, 2, 3, 1)).contiguous().numpy()


@dataclass
class DiscoveryView:
    """What discovery sees: ``index`` (sorted dataset indices), their images, maps and object
    regions on the reduced grid, and the full image size to map suspects back to."""

    index: np.ndarray
    images: np.ndarray  # (n, h, w, 3) float32
    maps: np.ndarray  # (n, h, w)
    regions: list[np.ndarray | None]
    full_shape: tuple[int, int]

    @property
    def reduced(self) -> bool:
        return tuple(self.maps.shape[1:3]) != tuple(self.full_shape)


def discovery_view(data: Dataset, maps: np.ndarray | SpilledStack, seed: int) -> DiscoveryView:
    """``maps``: (N, h, w) for every image of ``data``, at full size or already reduced (the
    compact maps). Images are reduced one at a time, so the full-size set is never stacked."""
    full = tuple(int(v) for v in data[0].shape[:2])
    size = reduced_shape(full)
    index = stratified_sample(data.labels(), MAX_IMAGES, seed)
    view_maps = np.asarray(maps[index])  # only the view's rows (the audit's may be spilled)
    if tuple(view_maps.shape[1:3]) != size:
        view_maps = area_resize(view_maps, size)
    images = np.zeros((len(index), *size, 3), np.float32)
    regions: list[np.ndarray | None] = []
    for row, i in enumerate(index):
        s = data[int(i)]
        images[row] = area_resize(s.image[None], size)[0]
        region = s.region if s.region.any() else None
        if region is not None and size != full:  # a reduced pixel is object when mostly object
            region = area_resize(region[None].astype(np.float32), size)[0] >= 0.5
        regions.append(region)
    return DiscoveryView(index, images, view_maps, regions, full)  # type: ignore[arg-type]


def to_full(suspect: SuspectedTell, view: DiscoveryView) -> SuspectedTell:
    """A suspect found on the view, in the dataset's own pixels and indices."""
    h, w = view.maps.shape[1:3]
    fy, fx = view.full_shape[0] / h, view.full_shape[1] / w

    def box(b: Box) -> Box:
        x0, y0, x1, y1 = b  # one reduced pixel more a side: where the tell's edge blended
        return (
            max(0, math.floor((x0 - 1) * fx)),
            max(0, math.floor((y0 - 1) * fy)),
            min(view.full_shape[1], math.ceil((x1 + 1) * fx)),
            min(view.full_shape[0], math.ceil((y1 + 1) * fy)),
        )

    idx = view.index
    return replace(
        suspect,
        box=box(suspect.box) if view.reduced else suspect.box,
        examples=[int(idx[i]) for i in suspect.examples],
        boxes={int(idx[i]): box(b) if view.reduced else b for i, b in suspect.boxes.items()},
    )
