"""Image files in and out: decode anything Pillow opens into float32 HWC RGB in [0, 1].

Decoding is strict on purpose: a truncated or corrupt file raises ``DatasetError`` naming the file
instead of being padded with grey (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set), because a
half-grey image is a silent data problem that would distort every metric computed on it.

Conversions (each reported, so readers can list a ``DataProblem(action="converted")``):

* grayscale (``1``, ``L``) → the gray value copied to R, G and B;
* alpha (``LA``, ``RGBA``, ``PA``, palette with transparency) → composited on **white**, the way
  viewers show it; dropping alpha instead would expose whatever colour hides under transparent
  pixels (often black), which no human annotator ever saw;
* 16-bit grayscale (``I;16*``, ``I``) → divided by 65535 (values above are clipped);
* 32-bit float (``F``) → clipped to [0, 1] (divided by 255 first when values exceed 1);
* palette (``P``), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` → Pillow's RGB conversion.

A multi-frame file (TIFF pages, animated GIF/PNG/WebP) gives its first frame, reported as a
conversion: there is one label per file, and the first frame is what thumbnails and most
training loaders show.

EXIF orientation *is* applied (``ImageOps.exif_transpose``, reported as a conversion): images
are used as every viewer displays them, because annotation tools (labelImg, CVAT, Label Studio)
draw boxes on the displayed image, and a model sees what the user saw. Readers compare a declared
annotation size (VOC ``<size>``, COCO ``width``/``height``) with the transposed image.

Size cap: an image whose header declares more than ``MAX_PIXELS`` pixels is refused *before*
decoding (a 118 KB PNG can declare 100 megapixels, i.e. 1.2 GB as float32 RGB). The cap is the
``max_pixels`` reader option, else ``LEAKAUDIT_MAX_PIXELS``, else ``MAX_PIXELS`` (50 M: a 7000×7000
photo, roughly twice a 24-megapixel camera frame, still fits). Pillow's own decompression-bomb
warning is superseded by this cap; its hard error (above 2× ``Image.MAX_IMAGE_PIXELS``) is turned
into a ``DatasetError`` like every other unreadable file.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from leakaudit.errors import ConfigError, DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "LEAKAUDIT_MAX_PIXELS"
_EXIF_ORIENTATION = 0x0112


def pixel_cap(max_pixels: int | None = None) -> int:
    """The pixel cap in force: ``max_pixels`` if given, else ``$LEAKAUDIT_MAX_PIXELS``, else
    ``MAX_PIXELS``. A bad value is a ``ConfigError`` (a typo must not lift the cap silently)."""
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise ConfigError(f"max_pixels must be a positive integer, got {max_pixels!r}")
        return max_pixels
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not env:
        return MAX_PIXELS
    try:
        value = int(env)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV} must be a positive integer, got {env!r}")
    return value


def over_cap(width: int, height: int, cap: int) -> str | None:
    """The message for a declared size above the cap (None when it fits)."""
    if width * height <= cap:
        return None
    return (
        f"{width}×{height} = {width * height:,} pixels exceeds the pixel cap of {cap:,} "
        f"(max_pixels / {MAX_PIXELS_ENV})"
    )


def require_regular_file(path: Path, what: str) -> None:
    """Refuse a FIFO, socket or device named like a data file: opening one blocks forever
    (a FIFO waits for a writer) or reads without end, so it is a counted skip, not a hang."""
    mode = path.stat().st_mode  # follows links: what would be opened
    if not stat.S_ISREG(mode):
        raise DatasetError(f"{what} {path} is not a regular file (a pipe, socket or device)")


def read_image(path: str | Path, max_pixels: int | None = None) -> tuple[np.ndarray, str | None]:
    """Decode ``path`` to float32 HWC RGB in [0, 1], EXIF orientation applied; also say which
    conversion happened (or None).

    Raises ``DatasetError`` naming the file when it is missing, not an image, corrupt, truncated
    or larger than the pixel cap (checked on the header, before any pixel is decoded).
    """
    path = Path(path)
    cap = pixel_cap(max_pixels)
    try:
        require_regular_file(path, "image")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our cap decides
            img = Image.open(path)
        with img:
            too_big = over_cap(img.size[0], img.size[1], cap)
            if too_big:
                raise DatasetError(f"image {path}: {too_big}")
            img.load()  # decode now (the first frame): truncation only shows up here
            frames = getattr(img, "n_frames", 1) if img.format != "MPO" else 1  # MPO: a preview
            multi = f"multi-frame image ({frames} frames), first frame used" if frames > 1 else None
            oriented, note = _exif_transpose(img, path)
            rgb, conversion = _to_rgb_float(oriented)
            return rgb, "; ".join(n for n in (multi, note, conversion) if n) or None
    except DatasetError:
        raise
    except FileNotFoundError as e:
        raise DatasetError(f"image file not found: {path}") from e
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read image {path}: {e}") from e


def _exif_transpose(img: Image.Image, path: Path) -> tuple[Image.Image, str | None]:
    """Rotate/flip to the displayed orientation; a broken EXIF block is an error, not ignored,
    since guessing the orientation would misplace every box on the image."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation in (None, 1):
            return img, None
        if orientation not in range(2, 9):  # viewers show such images as stored; so do we
            return img, f"invalid EXIF orientation {orientation!r} ignored"
        out = ImageOps.exif_transpose(img)
    except Exception as e:  # Pillow's EXIF parser raises many types on corrupt blocks
        raise DatasetError(f"cannot apply the EXIF orientation of image {path}: {e}") from e
    return out, f"EXIF orientation {orientation} applied"


def load_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` to float32 HWC RGB in [0, 1] (see ``read_image`` for the conversion note)."""
    return read_image(path)[0]


def _to_rgb_float(img: Image.Image) -> tuple[np.ndarray, str | None]:
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img, dtype=np.float32) / 255.0, None
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(img).astype(np.float64)
        gray = np.clip(a / 65535.0, 0.0, 1.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=2), f"16-bit grayscale ({mode}) scaled by 1/65535"
    if mode == "F":
        a = np.asarray(img, dtype=np.float32)
        if np.nanmax(a, initial=0.0) > 1.0:
            a = a / 255.0
        gray = np.clip(np.nan_to_num(a), 0.0, 1.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=2), "32-bit float grayscale clipped to [0, 1]"
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
        return rgb.astype(np.float32), f"{mode} with alpha composited on white"
    if mode in ("1", "L"):
        gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        return np.repeat(gray[..., None], 3, axis=2), f"grayscale ({mode}) copied to RGB"
    rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return rgb, f"{mode} converted to RGB"


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize, anti-aliased when shrinking (Pillow widens the filter by the scale
    factor), on float channels so nothing is quantised to 8 bits on the way."""
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=False)
    chans = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[2])
    ]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask (masks never get fractional values)."""
    if mask.shape[:2] == (height, width):
        return mask.astype(bool, copy=False)
    h, w = mask.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return mask[rows[:, None], cols[None, :]].astype(bool)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] → uint8 with rounding (the quantisation every saved image goes through)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path) -> None:
    """Write an RGB float image losslessly (PNG), so planted tells keep their exact pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path, format="PNG", compress_level=1)  # speed
