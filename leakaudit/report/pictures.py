"""Small image helpers for the report: heat colouring, overlays, outlines, PNG data URIs."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

# A perceptually ordered dark→bright ramp (black, purple, red, orange, pale yellow).
_RAMP = np.array(
    [[0.0, 0.0, 0.02], [0.32, 0.07, 0.5], [0.8, 0.18, 0.38], [0.99, 0.55, 0.2], [1.0, 0.98, 0.75]]
)
REGION_COLOUR = (0.1, 1.0, 0.3)
TELL_COLOUR = (0.0, 0.9, 1.0)


def heat(values: np.ndarray) -> np.ndarray:
    """Map [0, 1] values to RGB with the ramp above."""
    v = np.clip(np.nan_to_num(values), 0, 1) * (len(_RAMP) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_RAMP) - 2)
    frac = (v - lo)[..., None]
    return _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac


def positive_normalised(attr: np.ndarray) -> np.ndarray:
    """Positive part scaled to [0, 1] by its maximum (what the scores count as evidence)."""
    pos = np.clip(np.nan_to_num(attr), 0, None)
    peak = pos.max()
    return pos / peak if peak > 0 else pos


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def outline(image: np.ndarray, mask: np.ndarray | None, colour, factor: int) -> np.ndarray:
    """Draw the boundary of ``mask`` (upscaled to the image) in ``colour``."""
    if mask is None or not mask.any():
        return image
    edge = find_boundaries(upscale(mask, factor), mode="inner")
    out = image.copy()
    out[edge] = colour
    return out


def overlay(image: np.ndarray, attr: np.ndarray) -> np.ndarray:
    """Heat over a dimmed copy of the image; opacity grows with attribution."""
    a = positive_normalised(attr)[..., None]
    base = 0.35 + 0.4 * image.mean(axis=-1, keepdims=True)
    return base * (1 - 0.85 * a) + heat(a[..., 0]) * 0.85 * a


def panel(
    image: np.ndarray,
    attr: np.ndarray | None = None,
    region: np.ndarray | None = None,
    tell: np.ndarray | None = None,
    factor: int = 3,
) -> np.ndarray:
    """One gallery cell: image or overlay, upscaled, with region and tell outlines."""
    pic = image if attr is None else overlay(image, attr)
    pic = upscale(np.clip(pic, 0, 1), factor)
    pic = outline(pic, region, REGION_COLOUR, factor)
    return outline(pic, tell, TELL_COLOUR, factor)


def data_uri(image: np.ndarray) -> str:
    """PNG-encode an HWC float image in [0, 1] as a data: URI (report stays self-contained)."""
    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(
        buf, format="PNG", optimize=True
    )
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
