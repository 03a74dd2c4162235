"""Boxes (x0, y0, x1, y1, exclusive ends): area, overlap, and when two mark the same place."""

from __future__ import annotations

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 with exclusive ends


def box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _intersection(a: Box, b: Box) -> int:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy


def box_iou(a: Box, b: Box) -> float:
    inter = _intersection(a, b)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_place(a: Box, b: Box) -> bool:
    """Two candidate boxes mark one thing: they overlap by IoU ≥ 0.5, or one lies (80 %) inside
    the other. The second case matters: refinement on a different colour bin can return a tell's
    inner part, which by IoU alone would count as a second, weaker copy of the same tell."""
    if box_iou(a, b) >= 0.5:
        return True
    smaller = min(box_area(a), box_area(b))
    return smaller > 0 and _intersection(a, b) / smaller >= 0.8
