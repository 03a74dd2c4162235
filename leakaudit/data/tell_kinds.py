"""Tell shapes beyond the solid rectangle: what a real shortcut looks like.

Real tells are rarely a clean colour square: a hospital logo is semi-transparent, a scanner
stamps a few letters, a frame surrounds a region, a sensor leaves a noisy patch, and whatever
it is gets JPEG-compressed with the image. Each kind here draws into the ``size``×``size`` box a
``TellSpec`` places and returns the new image plus the mask of the pixels that actually changed,
so scores and behaviour tests use the tell's true footprint, not its box.

Kinds (registry ``KINDS``):

* ``solid``  — the box filled with the colour (``tells.draw_rectangle``; unchanged).
* ``logo``   — a disc alpha-blended over the image: ``(1 − α)·image + α·colour``; the
  background shows through, so the tell's pixels have no single colour.
* ``text``   — a short string in PIL's built-in bitmap font, scaled to the box (nearest
  neighbour, so strokes stay one colour); only the glyph pixels change.
* ``border`` — a hollow square frame, ``max(1, size // 5)`` px thick, around the box.
* ``noise``  — the colour plus per-pixel Gaussian noise (σ = ``noise_sigma``, seeded per image):
  a texture whose mean, not any one pixel value, is class-specific.

``jpeg_quality`` (any kind): the tell's neighbourhood (box grown by 2 px) is replaced by its
JPEG round trip at that quality — block artefacts and colour bleeding, as in a re-saved file —
while pixels away from the tell stay untouched, so compression itself is not a second tell.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 with exclusive ends


def _clip(box: Box, h: int, w: int) -> Box:
    x0, y0, x1, y1 = box
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def _changed(out: np.ndarray, image: np.ndarray) -> np.ndarray:
    return np.any(out != image, axis=-1)


def draw_solid(image: np.ndarray, box: Box, colour: Sequence[float], **_: object) -> np.ndarray:
    x0, y0, x1, y1 = _clip(box, *image.shape[:2])
    out = image.copy()
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = np.asarray(colour, dtype=image.dtype)
    return out


def draw_logo(
    image: np.ndarray, box: Box, colour: Sequence[float], alpha: float = 0.6, **_: object
) -> np.ndarray:
    """A disc inscribed in the box, blended with opacity ``alpha``."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
    r = max(x1 - x0, y1 - y0) / 2
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    out = image.copy()
    c = np.asarray(colour, dtype=np.float64)
    blended = (1 - alpha) * image[disc].astype(np.float64) + alpha * c
    out[disc] = blended.astype(image.dtype)
    return out


@lru_cache(maxsize=32)
def _glyphs(text: str, side: int) -> np.ndarray:
    """Boolean side×side mask of ``text`` in PIL's bitmap font, scaled to fill the square."""
    font = ImageFont.load_default_imagefont()
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (max(1, x1 - x0), max(1, y1 - y0)), 0)
    ImageDraw.Draw(canvas).text((-x0, -y0), text, fill=255, font=font)
    scaled = canvas.resize((side, side), Image.Resampling.NEAREST)
    return np.asarray(scaled) > 127


def draw_text(
    image: np.ndarray, box: Box, colour: Sequence[float], text: str = "TM", **_: object
) -> np.ndarray:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    side = max(1, min(x1 - x0, y1 - y0))
    glyph = np.zeros((h, w), dtype=bool)
    g = _glyphs(text, side)
    gx0, gy0 = max(0, x0), max(0, y0)
    gx1, gy1 = min(w, x0 + side), min(h, y0 + side)
    if gx1 > gx0 and gy1 > gy0:
        glyph[gy0:gy1, gx0:gx1] = g[gy0 - y0 : gy1 - y0, gx0 - x0 : gx1 - x0]
    out = image.copy()
    out[glyph] = np.asarray(colour, dtype=image.dtype)
    return out


def border_width(size: int) -> int:
    return max(1, size // 5)


def draw_border(image: np.ndarray, box: Box, colour: Sequence[float], **_: object) -> np.ndarray:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    t = border_width(min(x1 - x0, y1 - y0))
    frame = np.zeros((h, w), dtype=bool)
    cx0, cy0, cx1, cy1 = _clip(box, h, w)
    frame[cy0:cy1, cx0:cx1] = True
    ix0, iy0, ix1, iy1 = _clip((x0 + t, y0 + t, x1 - t, y1 - t), h, w)
    if ix1 > ix0 and iy1 > iy0:
        frame[iy0:iy1, ix0:ix1] = False
    out = image.copy()
    out[frame] = np.asarray(colour, dtype=image.dtype)
    return out


def draw_noise(
    image: np.ndarray,
    box: Box,
    colour: Sequence[float],
    rng: np.random.Generator | None = None,
    noise_sigma: float = 0.2,
    **_: object,
) -> np.ndarray:
    rng = rng if rng is not None else np.random.default_rng(0)
    x0, y0, x1, y1 = _clip(box, *image.shape[:2])
    out = image.copy()
    if x1 > x0 and y1 > y0:
        patch = np.asarray(colour, np.float64) + rng.normal(0, noise_sigma, (y1 - y0, x1 - x0, 3))
        out[y0:y1, x0:x1] = np.clip(patch, 0, 1).astype(image.dtype)
    return out


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "solid": draw_solid,
    "logo": draw_logo,
    "text": draw_text,
    "border": draw_border,
    "noise": draw_noise,
}


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after saving as JPEG at ``quality`` and reading back (float [0, 1] in and out)."""
    u8 = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    back = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
    return back.astype(image.dtype)


def draw_kind(
    image: np.ndarray,
    box: Box,
    colour: Sequence[float],
    kind: str = "solid",
    jpeg_quality: int | None = None,
    rng: np.random.Generator | None = None,
    **params: object,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one tell of ``kind``; return the new image and the mask of the changed pixels."""
    if kind not in KINDS:
        raise ValueError(f"unknown tell kind {kind!r}; choose from {sorted(KINDS)}")
    out = KINDS[kind](image, box, colour, rng=rng, **params)
    if jpeg_quality is not None:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = _clip((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), h, w)
        near = np.zeros((h, w), dtype=bool)
        near[y0:y1, x0:x1] = True
        out = np.where(near[..., None], jpeg_round_trip(out, jpeg_quality), image)
        out = out.astype(image.dtype)
    return out, _changed(out, image)
