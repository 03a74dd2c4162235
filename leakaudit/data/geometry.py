"""Box and mask geometry shared by the readers (pixel edges, 0-based, end exclusive).

See ``leakaudit.data.formats`` for the conventions; everything here is pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage import draw

Box = tuple[float, float, float, float]  # x0, y0, x1, y1: pixel edges, end exclusive

IntBox = tuple[int, int, int, int]

CLIP_TOLERANCE = 1.0  # px a box may stick out without being counted as clipped
DEFAULT_MARGIN = 0.5  # crop context per side, as a fraction of the box's longer side


def clip_box(box: Box, height: int, width: int) -> Box:
    x0, y0, x1, y1 = box
    return (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))


def box_mask(box: Box, height: int, width: int) -> np.ndarray:
    """Pixels whose centre lies in ``box`` (integer boxes: exactly columns x0..x1-1)."""
    x0, y0, x1, y1 = box
    c0 = int(np.clip(np.ceil(x0 - 0.5), 0, width))
    c1 = int(np.clip(np.ceil(x1 - 0.5), 0, width))
    r0 = int(np.clip(np.ceil(y0 - 0.5), 0, height))
    r1 = int(np.clip(np.ceil(y1 - 0.5), 0, height))
    mask = np.zeros((height, width), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def polygon_mask(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Union of polygons (x, y pixel-edge coordinates); shifted by half a pixel so a polygon
    tracing a box gives exactly ``box_mask`` of that box."""
    mask = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        rr, cc = draw.polygon(poly[:, 1] - 0.5, poly[:, 0] - 0.5, shape=(height, width))
        mask[rr, cc] = True
    return mask


def crop_window(
    box: Box,
    height: int,
    width: int,
    margin: float = DEFAULT_MARGIN,
    window: float | None = None,
) -> IntBox:
    """Square crop around ``box`` with ``margin`` context (fraction of the box's longer side per
    side), shifted inside the image and with context shrunk before it would need padding.

    ``window`` (image pixels) replaces the proportional context by one fixed side for every object
    (never smaller than the box), so all crops share one pixel scale: with proportional context
    the scale of the surroundings reveals the object's size, i.e. its class, even with the object
    itself removed."""
    x0, y0, x1, y1 = box
    long_side = max(x1 - x0, y1 - y0, 1.0)
    side = long_side * (1.0 + 2.0 * margin) if window is None else max(float(window), long_side)
    side = min(side, max(long_side, float(min(height, width))))
    side_i = max(1, int(round(side)))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def place(centre: float, extent: int) -> int:
        start = int(round(centre - side_i / 2.0))
        if side_i <= extent:
            start = min(max(start, 0), extent - side_i)
        return start

    wx0, wy0 = place(cx, width), place(cy, height)
    return (wx0, wy0, wx0 + side_i, wy0 + side_i)


def crop_array(arr: np.ndarray, window: IntBox, pad: str = "edge") -> np.ndarray:
    """Cut ``window`` out of an image or mask; outside parts are padded (masks with False)."""
    x0, y0, x1, y1 = window
    h, w = arr.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    part = arr[cy0:cy1, cx0:cx1]
    pads = [(cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1)] + [(0, 0)] * (arr.ndim - 2)
    if not any(a or b for a, b in pads):
        return part.copy()
    if arr.dtype == bool or pad == "constant":
        return np.pad(part, pads, mode="constant")
    return np.pad(part, pads, mode=pad)


def mask_bbox(mask: np.ndarray) -> IntBox | None:
    """Bounding box (exclusive end) of a mask, or None when empty."""
    if not mask.any():
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def check_box(box: Box, height: int, width: int) -> tuple[Box | None, str | None, str | None]:
    """Validate a box against the image: (clipped box or None, problem text, action)."""
    x0, y0, x1, y1 = box
    if not (x1 > x0 and y1 > y0):
        return None, f"degenerate box {_fmt_box(box)}", "empty region"
    cb = clip_box(box, height, width)
    if not (cb[2] > cb[0] and cb[3] > cb[1]):
        return None, f"box {_fmt_box(box)} outside the {width}×{height} image", "empty region"
    if max(abs(a - b) for a, b in zip(box, cb, strict=True)) > CLIP_TOLERANCE:
        return cb, f"box {_fmt_box(box)} partly outside the {width}×{height} image", "clipped"
    return cb, None, None


def _fmt_box(box: Box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"
