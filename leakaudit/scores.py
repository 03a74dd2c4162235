"""Localisation scores: (attribution map, boolean mask) → one float per sample. Pure numpy.

Only *positive* attribution counts as evidence for the explained class. A score is NaN — never
a made-up number — when its mask is empty or the map has no positive mass.
"""

from __future__ import annotations

import numpy as np


def _positive(attr: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(attr, dtype=np.float64), 0.0, None)


def mass_inside(attr: np.ndarray, mask: np.ndarray | None) -> float:
    """Share of positive attribution that lies inside ``mask`` (NaN if undefined)."""
    if mask is None:
        return float("nan")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != np.shape(attr):
        raise ValueError(f"mask shape {mask.shape} != attribution shape {np.shape(attr)}")
    pos = _positive(attr)
    total = pos.sum()
    if not mask.any() or total <= 0:
        return float("nan")
    return float(pos[mask].sum() / total)


def outside_mass(attr: np.ndarray, region: np.ndarray | None) -> float:
    """Share of positive attribution *outside* the object region (higher is worse)."""
    inside = mass_inside(attr, region)
    return float("nan") if np.isnan(inside) else 1.0 - inside


def tell_mass(attr: np.ndarray, tell: np.ndarray | None) -> float:
    """Share of positive attribution on the tell (higher is worse)."""
    return mass_inside(attr, tell)


def tell_hit(attr: np.ndarray, tell: np.ndarray | None) -> float:
    """1.0 when the top-attributed region lands on the tell, else 0.0 (NaN if no tell).

    The top region is the set of pixels at the map's maximum: one pixel for gradient maps, a
    whole superpixel for LIME's map. It counts as on the tell when the overlap covers at least
    half of the smaller of the two — so a superpixel that swallowed a small tell counts, and so
    does a small superpixel inside a big tell, but not a big superpixel that merely grazes it."""
    if tell is None or not np.asarray(tell).any():
        return float("nan")
    a = np.asarray(attr, dtype=np.float64)
    if not np.isfinite(a).all() or a.max() <= 0:
        return float("nan")
    top = a == a.max()
    tell = np.asarray(tell, dtype=bool)
    overlap = (top & tell).sum()
    return float(overlap >= 0.5 * min(top.sum(), tell.sum()))


def area_fraction(mask: np.ndarray | None) -> float:
    """Chance level for a mass share: the mask's share of the image area."""
    if mask is None:
        return float("nan")
    return float(np.asarray(mask, dtype=bool).mean())
