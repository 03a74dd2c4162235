"""Readers for user datasets: ImageFolder, Pascal VOC, COCO and CSV boxes → ``Dataset``.

Every reader returns samples of one size (stacking needs it) with a region mask per sample, and
lists everything it skipped or altered in ``dataset.problems``; nothing is dropped silently.

Conventions shared by all readers:

* Coordinates are pixel edges, 0-based, end exclusive: a box ``(10, 20, 30, 40)`` covers columns
  10..29 and rows 20..39; a pixel belongs to a box or polygon when its centre lies inside. VOC
  files are 1-based inclusive (``xmin=1`` is the first column) and are converted on reading. COCO
  boxes/polygons and CSV boxes are used as they are.
* A box sticking out of the image by more than 1 px is clipped and counted (1 px is tolerated:
  0-based VOC writers are common). A degenerate box (``xmax <= xmin``) or one fully outside gives
  an empty region (image mode; the metric for that sample is NaN) or is skipped (crop mode).
* Class names come from the data, sorted, unless ``classes`` is given (then in that order); a
  class outside the given list raises ``DatasetError`` unless ``skip_unknown=True``, which drops
  those objects and counts them once per class.
* ``mode="image"`` (one sample per image) resizes to ``size``×``size`` when ``size`` is given,
  bilinear with anti-aliasing, aspect not kept (as ``Resize((s, s))`` in most training code);
  masks use nearest neighbour. With ``size=None`` every image is resized to the first image's
  size and each resized image is counted (``action="resized"``): one batch needs one size.
* ``mode="crop"`` (detection formats): every object becomes one sample, a square crop of side
  ``max(w, h) * (1 + 2 * margin)`` around its box (or a fixed ``window`` in image pixels, never
  smaller than the box), resized to ``size`` (default 64). The crop is
  shifted to stay inside the image and its context is shrunk to the image's short side before
  any padding happens, because padding that appears mostly for big objects would itself be a
  class-correlated tell. Only a box larger than the image is padded (``pad``: numpy pad mode,
  default ``"edge"``); padding is never region. The region is the object's own box/polygon.
* ``label_rule`` (image mode, detection formats) decides an image's label from its objects:
  ``"unique"`` (default) keeps images whose objects all share one class and skips the others
  (counted); ``"error"`` raises instead; ``"majority"`` takes the most frequent class (ties are
  skipped); ``"largest"`` takes the class with the largest total box area. The region is the
  union of the labelled class's objects. Datasets with many classes per image (BCCD: RBCs
  everywhere) belong in crop mode.
* A ``tells.json`` written by ``leakaudit.inject`` (found beside the annotations, or given as
  ``tells_path``) fills ``Sample.tell``/``tell_box``, mapped through cropping and resizing; tell
  pixels are removed from the region, as ``tells.plant`` does. A tell box covering more than
  ``MAX_TELL_FRACTION`` (25 %) of its image is dropped and counted: a "tell" that large is most
  of the picture, so attribution on it says nothing about cheating (a whole-image box would
  make every model look leaky). Real tells (stickers, watermarks, rulers) are far smaller.
* Image paths are resolved (symlinks followed) and must stay inside the dataset root (VOC root,
  ImageFolder root, or the COCO/CSV ``images_root``); an absolute path, a ``../`` path or a link
  leading outside is a counted skip, never read. Two annotations of the same image file (two
  VOC XMLs naming it, a COCO image id listed twice, ``a.png`` and ``./a.png`` in a CSV) keep
  the first and count the others as skipped, so no image is scored twice.
* Declared sizes (VOC ``<size>``, COCO ``width``/``height``, RLE ``size``) are checked against
  the pixel cap (``images.MAX_PIXELS``, option ``max_pixels``, env ``LEAKAUDIT_MAX_PIXELS``)
  before anything is allocated; above it the image (or the RLE annotation) is a counted skip.
* Boxes refer to the image as displayed, i.e. after its EXIF orientation (``images.read_image``
  applies it): annotation tools draw on the displayed image. When the annotation declares a
  size (VOC ``<size>``, COCO ``width``/``height``; 0 or missing means undeclared) that differs
  from the decoded image, the image is skipped and counted rather than kept with clipping:
  the boxes were drawn on a differently sized or rotated picture, so every region would be off.
* Text files must be UTF-8 (a BOM is accepted); anything else is a one-line ``DatasetError``
  naming the file and the line or byte offset.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage import draw

from leakaudit.data.images import (
    IMAGE_EXTENSIONS,
    over_cap,
    pixel_cap,
    read_image,
    resize_image,
    resize_mask,
)
from leakaudit.data.samples import DataProblem, Dataset, Sample
from leakaudit.errors import ConfigError, DatasetError

Box = tuple[float, float, float, float]  # x0, y0, x1, y1: pixel edges, end exclusive
IntBox = tuple[int, int, int, int]

DEFAULT_CROP_SIZE = 64
DEFAULT_MARGIN = 0.5
CLIP_TOLERANCE = 1.0  # px a box may stick out without being counted as clipped
MIN_CROP_BOX = 2.0  # px: crop mode skips smaller boxes (BCCD has 1×1 "boxes": nothing to see)
LABEL_RULES = ("unique", "error", "majority", "largest")
MODES = ("image", "crop")
TELLS_FILE = "tells.json"
MAX_TELL_FRACTION = 0.25  # a tell box above this share of its image is refused (docstring)


class DataWarning(UserWarning):
    """Emitted for each skipped file so a user watching the console sees it at once."""


@dataclass
class ObjectAnn:
    """One annotated object: a class name plus a box, polygons, an RLE mask or a mask file."""

    label: str
    box: Box | None = None
    polygons: list[np.ndarray] = field(default_factory=list)  # each (N, 2) x, y
    mask: np.ndarray | None = None  # decoded RLE, full image size
    mask_file: Path | None = None  # ImageFolder region masks
    where: str = ""  # "file.xml object 3", for messages

    def bounds(self) -> Box | None:
        if self.box is not None:
            return self.box
        if self.polygons:
            pts = np.concatenate(self.polygons)
            return (
                float(pts[:, 0].min()),
                float(pts[:, 1].min()),
                float(pts[:, 0].max()),
                float(pts[:, 1].max()),
            )
        if self.mask is not None and self.mask.any():
            ys, xs = np.nonzero(self.mask)
            return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return None


@dataclass
class ImageRecord:
    """One image file and its objects, as parsed (nothing loaded yet)."""

    key: str  # path relative to the images root: sample id and tells.json key
    path: Path
    objects: list[ObjectAnn]
    source: str  # annotation file (and line) this came from
    size: tuple[int, int] | None = None  # (width, height) the annotation declares, if any


# --------------------------------------------------------------------------------------------
# geometry


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


# --------------------------------------------------------------------------------------------
# parsers: files → ImageRecords (no pixels read)


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _resolved(path: Path) -> Path | None:
    """``path`` with symlinks and ``..`` resolved, or None when the OS cannot resolve it
    (embedded NUL, symlink loop)."""
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):
        return None


def _inside(path: Path, root: Path) -> bool:
    """True when ``path`` (resolved, so links count by their target) lies under ``root``."""
    rp, rr = _resolved(path), _resolved(root)
    return rp is not None and rr is not None and rp.is_relative_to(rr)


def _outside_problem(item: str, name: str, path: Path, root: Path) -> DataProblem:
    """The counted skip for a ``path`` that ``_inside`` refused (unresolvable or outside)."""
    if _resolved(path) is None:
        return DataProblem(item, f"image path {name!r} cannot be resolved", "skipped")
    return DataProblem(
        item, f"image path {name} resolves outside the dataset root {root}", "skipped"
    )


def _dedupe(records: list[ImageRecord], problems: list[DataProblem]) -> list[ImageRecord]:
    """Keep the first record of each image file; count the others (they would double-count the
    image, and paired comparisons would no longer line up)."""
    seen: dict[Path, ImageRecord] = {}
    out = []
    for r in records:
        rp = _resolved(r.path) or r.path
        first = seen.get(rp)
        if first is None:
            seen[rp] = r
            out.append(r)
            continue
        where = r.source if r.source != first.source else r.key
        problems.append(
            DataProblem(
                where,
                f"image {r.key} is already annotated by {first.source} ({first.key}); "
                "duplicate ignored",
                "skipped",
            )
        )
    return out


def _declared_size(width: float | None, height: float | None, what: str) -> tuple[int, int] | None:
    """(width, height) from an annotation; 0 or missing means 'not declared'."""
    if width is None or height is None or width <= 0 or height <= 0:
        return None
    if width != int(width) or height != int(height):
        raise DatasetError(f"{what}: image size must be whole pixels, got {width:g}×{height:g}")
    return int(width), int(height)


def _find_image(folder: Path, name: str | None, stem: str) -> Path | None:
    if name:
        p = folder / name
        if p.is_file():
            return p
    for base in ([Path(name).stem] if name else []) + [stem]:
        for ext in IMAGE_EXTENSIONS:
            for e in (ext, ext.upper()):
                p = folder / f"{base}{e}"
                if p.is_file():
                    return p
    return None


def _num(text: str | None, what: str) -> float:
    if text is None or not text.strip():
        raise DatasetError(f"{what}: missing value")
    try:
        v = float(text)
    except ValueError as e:
        raise DatasetError(f"{what}: not a number: {text!r}") from e
    if not np.isfinite(v):
        raise DatasetError(f"{what}: not a finite number: {text!r}")
    return v


def parse_voc(
    root: str | Path, problems: list[DataProblem], *, max_pixels: int | None = None
) -> list[ImageRecord]:
    """``root/Annotations/*.xml`` + ``root/JPEGImages``; VOC 1-based boxes → pixel edges.

    A ``<filename>`` that does not exist falls back to the image named like the XML file (VOC
    tools disagree on extensions), counted as a data problem."""
    root = Path(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise DatasetError(f"not a Pascal VOC folder: {ann_dir} does not exist")
    cap = pixel_cap(max_pixels)
    records = []
    for xml_path in sorted(ann_dir.glob("*.xml")):
        try:
            tree = ET.parse(xml_path)
        except ET.ParseError as e:  # str(e) is expat's reason with line and column
            raise DatasetError(f"{xml_path}: malformed XML ({e})") from e
        except OSError as e:
            raise DatasetError(f"{xml_path}: cannot read: {e.strerror or e}") from e
        ann = tree.getroot()
        filename = (ann.findtext("filename") or "").strip() or None
        item = str(xml_path.relative_to(root))
        size_el = ann.find("size")
        declared = None
        if size_el is not None:
            w_txt, h_txt = size_el.findtext("width"), size_el.findtext("height")
            if (w_txt or "").strip() and (h_txt or "").strip():
                what = f"{xml_path}: <size>"
                declared = _declared_size(_num(w_txt, what), _num(h_txt, what), what)
        objects = []
        for k, obj in enumerate(ann.iter("object")):
            where = f"{xml_path.name} object {k}"
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise DatasetError(f"{xml_path}: <object> {k} has no <name>")
            bb = obj.find("bndbox")
            box = None
            if bb is not None:
                xmin, ymin, xmax, ymax = (
                    _num(bb.findtext(t), f"{xml_path}: <object> {k} <bndbox>/<{t}>")
                    for t in ("xmin", "ymin", "xmax", "ymax")
                )
                box = (xmin - 1.0, ymin - 1.0, xmax, ymax)
            objects.append(ObjectAnn(name, box=box, where=where))
        if filename is not None and not _inside(img_dir / filename, root):
            problems.append(_outside_problem(item, filename, img_dir / filename, root))
            continue
        path = _find_image(img_dir, filename, xml_path.stem)
        if path is None:
            problems.append(
                DataProblem(
                    item,
                    f"annotation points at a missing image {filename or xml_path.stem}",
                    "skipped",
                )
            )
            continue
        if not _inside(path, root):
            problems.append(_outside_problem(item, path.name, path, root))
            continue
        if filename is None or path != img_dir / filename:
            said = f"<filename> {filename} not found" if filename else "no <filename>"
            problems.append(DataProblem(item, f"{said}; used {path.name}", "used fallback"))
        too_big = over_cap(*declared, cap) if declared else None
        if too_big:
            problems.append(DataProblem(item, f"<size> {too_big}", "skipped"))
            continue
        records.append(ImageRecord(path.name, path, objects, str(xml_path), size=declared))
    if not records and not problems:
        raise DatasetError(f"no annotations found in {ann_dir}")
    return _dedupe(records, problems)


def _whole(value: object) -> int | None:
    """A JSON whole number (``3`` or ``3.0``) as int; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _rle_size(rle: dict, where: str) -> tuple[int, int]:
    """(height, width) of a COCO RLE, validated before anything is allocated."""
    size = rle.get("size")
    hw = [_whole(v) for v in size] if isinstance(size, list) and len(size) == 2 else []
    if len(hw) != 2 or any(v is None or v < 1 for v in hw):
        raise DatasetError(
            f"{where}: RLE 'size' must be [height, width] positive integers, got {_short(size)}"
        )
    return hw[0], hw[1]  # type: ignore[return-value]


def _rle_decode(rle: dict, where: str) -> np.ndarray:
    """COCO RLE (list counts or the compressed string form) → bool mask of ``size`` (h, w)."""
    h, w = _rle_size(rle, where)
    counts = rle.get("counts")
    if isinstance(counts, str):
        counts = _rle_string_counts(counts, where)
    elif not isinstance(counts, list) or any(_whole(c) is None for c in counts):
        raise DatasetError(
            f"{where}: RLE 'counts' must be a list of integers or a compressed string, "
            f"got {_short(counts)}"
        )
    flat = np.zeros(h * w, dtype=bool)
    pos, value = 0, False
    for c in counts:
        c = int(c)
        if c < 0 or pos + c > h * w:
            raise DatasetError(f"{where}: RLE counts do not fit a {w}×{h} mask")
        flat[pos : pos + c] = value
        pos += c
        value = not value
    return flat.reshape((w, h)).T  # column-major, as COCO stores it


def _rle_string_counts(s: str, where: str = "RLE") -> list[int]:
    """Decode the LEB128-like string of compressed COCO RLE (as pycocotools' rleFrString)."""
    counts: list[int] = []
    i = 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            if i >= len(s):
                raise DatasetError(f"{where}: compressed RLE 'counts' string is truncated")
            c = ord(s[i]) - 48
            if not 0 <= c < 64:
                raise DatasetError(
                    f"{where}: compressed RLE 'counts' has an invalid character {s[i]!r} at {i}"
                )
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file (BOM accepted); anything else is a one-line ``DatasetError`` naming
    the file and where the first bad byte is."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DatasetError(f"{what} not found: {path}") from e
    except OSError as e:
        raise DatasetError(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DatasetError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset "
            f"{e.start}); save the file as UTF-8"
        ) from e


def load_json(path: Path, what: str, strict_numbers: bool = False) -> object:
    """Parse a JSON file with one-line errors; ``strict_numbers`` refuses NaN/Infinity."""

    def no_constant(name: str) -> float:
        raise DatasetError(f"{path}: {name} is not a valid number in {what}")

    text = read_text(path, what)
    try:
        if strict_numbers:
            return json.loads(text, parse_constant=no_constant)
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    except RecursionError as e:
        raise DatasetError(f"{path}: JSON nested too deeply") from e


def _coco_id(value: object, what: str) -> int | str:
    """COCO ids are integers (some tools write strings); lists, dicts, bools are errors."""
    whole = _whole(value)
    if whole is not None:
        return whole
    if isinstance(value, str):
        return value
    raise DatasetError(f"{what} must be an integer or a string, got {_short(value)}")


def parse_coco(
    json_path: str | Path,
    images_root: str | Path,
    problems: list[DataProblem],
    *,
    max_pixels: int | None = None,
) -> list[ImageRecord]:
    """COCO instances JSON: boxes, polygons and RLE masks (``images_root`` holds file_name)."""
    json_path, images_root = Path(json_path), Path(images_root)
    cap = pixel_cap(max_pixels)
    data = load_json(json_path, "COCO file")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetError(f"{json_path}: needs lists 'images', 'annotations' and 'categories'")
    cats: dict[int | str, str] = {}
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise DatasetError(f"{json_path}: categories[{i}] needs 'id' and 'name'")
        cid = _coco_id(c["id"], f"{json_path}: categories[{i}] 'id'")
        if not isinstance(c["name"], str | int) or isinstance(c["name"], bool):
            raise DatasetError(
                f"{json_path}: categories[{i}] 'name' must be a string, got {_short(c['name'])}"
            )
        name = str(c["name"]).strip()
        if cats.get(cid, name) != name:
            raise DatasetError(
                f"{json_path}: category id {cid!r} is named both {cats[cid]!r} and {name!r}"
            )
        cats[cid] = name
    images: dict[int | str, tuple[str, list[ObjectAnn], tuple[int, int] | None]] = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DatasetError(f"{json_path}: images[{i}] needs 'id' and 'file_name'")
        iid = _coco_id(im["id"], f"{json_path}: images[{i}] 'id'")
        fn = im["file_name"]
        if not isinstance(fn, str) or not fn.strip():
            raise DatasetError(
                f"{json_path}: images[{i}] 'file_name' must be a non-empty string, got {_short(fn)}"
            )
        dims = []
        for k in ("width", "height"):
            v = im.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise DatasetError(
                    f"{json_path}: images[{i}] '{k}' must be a number, got {_short(v)}"
                )
            dims.append(None if v is None else _num(str(v), f"{json_path}: images[{i}] '{k}'"))
        declared = _declared_size(dims[0], dims[1], f"{json_path}: images[{i}]")
        if iid in images:
            problems.append(
                DataProblem(
                    f"{json_path.name} images[{i}]",
                    f"duplicate image id {iid!r} ({fn}); the first entry "
                    f"({images[iid][0]}) is kept",
                    "skipped",
                )
            )
            continue
        images[iid] = (fn, [], declared)
    for i, a in enumerate(data["annotations"]):
        where = f"{json_path.name} annotations[{i}]"
        if not isinstance(a, dict) or "image_id" not in a or "category_id" not in a:
            raise DatasetError(f"{json_path}: annotations[{i}] needs 'image_id' and 'category_id'")
        where += f" (id {_short(a.get('id', '?'))})"
        cid = _coco_id(a["category_id"], f"{json_path}: {where} 'category_id'")
        iid = _coco_id(a["image_id"], f"{json_path}: {where} 'image_id'")
        if cid not in cats:
            raise DatasetError(f"{json_path}: {where} has unknown category_id {cid!r}")
        if iid not in images:
            problems.append(
                DataProblem(where, f"annotation points at unknown image id {iid!r}", "skipped")
            )
            continue
        box = None
        if a.get("bbox") is not None:
            bb = a["bbox"]
            if not isinstance(bb, list) or len(bb) != 4:
                raise DatasetError(f"{json_path}: {where}: bbox must be [x, y, width, height]")
            x, y, bw, bh = (_num(str(v), f"{json_path}: {where} bbox") for v in bb)
            box = (x, y, x + bw, y + bh)
        polygons, mask = [], None
        seg = a.get("segmentation")
        if isinstance(seg, dict):
            rh, rw = _rle_size(seg, f"{json_path}: {where}")
            too_big = over_cap(rw, rh, cap)
            if too_big:
                problems.append(DataProblem(where, f"RLE size {too_big}", "skipped"))
                continue
            mask = _rle_decode(seg, f"{json_path}: {where}")
        elif isinstance(seg, list):
            for poly in seg:
                if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                    raise DatasetError(
                        f"{json_path}: {where}: polygon needs an even number (≥ 6) of coordinates"
                    )
                pts = np.array([_num(str(v), f"{json_path}: {where} polygon") for v in poly])
                polygons.append(pts.reshape(-1, 2))
        elif seg is not None:
            raise DatasetError(f"{json_path}: {where}: unsupported segmentation {type(seg)}")
        obj = ObjectAnn(cats[cid], box=box, polygons=polygons, mask=mask, where=where)
        images[iid][1].append(obj)
    records = []
    for file_name, objects, declared in images.values():
        path = images_root / file_name
        if not _inside(path, images_root):
            problems.append(_outside_problem(file_name, file_name, path, images_root))
            continue
        if not path.is_file():
            problems.append(
                DataProblem(file_name, "annotation points at a missing image", "skipped")
            )
            continue
        too_big = over_cap(*declared, cap) if declared else None
        if too_big:
            problems.append(DataProblem(file_name, f"width × height {too_big}", "skipped"))
            continue
        records.append(ImageRecord(file_name, path, objects, str(json_path), size=declared))
    return _dedupe(records, problems)


CSV_COLUMNS = ("image", "label", "xmin", "ymin", "xmax", "ymax")


def parse_csv(
    csv_path: str | Path,
    images_root: str | Path,
    problems: list[DataProblem],
    *,
    max_pixels: int | None = None,
) -> list[ImageRecord]:
    """``image,label,xmin,ymin,xmax,ymax`` rows (pixel edges, 0-based, end exclusive); several
    rows per image allowed; empty box fields mean "label only, no region". UTF-8 (BOM ok).
    ``max_pixels`` is accepted for a uniform signature: a CSV declares no image sizes."""
    csv_path, images_root = Path(csv_path), Path(images_root)
    pixel_cap(max_pixels)  # validate the option even though only read_image uses it here
    text = read_text(csv_path, "CSV file")
    grouped: dict[str, list[ObjectAnn]] = {}
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{csv_path}: line 1: missing column(s) {', '.join(missing)}")
        try:
            for row in reader:
                line = reader.line_num
                where = f"{csv_path.name} line {line}"
                image = (row["image"] or "").strip()
                label = (row["label"] or "").strip()
                if not image or not label:
                    raise DatasetError(f"{csv_path}: line {line}: empty image or label")
                fields = [row[c] for c in ("xmin", "ymin", "xmax", "ymax")]
                if any(f is None for f in fields):
                    raise DatasetError(f"{csv_path}: line {line}: too few columns")
                if all(not f.strip() for f in fields):
                    box = None
                else:
                    vals = [_num(f, f"{csv_path}: line {line}") for f in fields]
                    box = (vals[0], vals[1], vals[2], vals[3])
                grouped.setdefault(image, []).append(ObjectAnn(label, box=box, where=where))
        except csv.Error as e:
            raise DatasetError(f"{csv_path}: line {reader.line_num}: {e}") from e
    records = []
    for image, objects in grouped.items():
        path = images_root / image
        if not _inside(path, images_root):
            problems.append(_outside_problem(image, image, path, images_root))
            continue
        if not path.is_file():
            problems.append(DataProblem(image, "annotation points at a missing image", "skipped"))
            continue
        records.append(ImageRecord(image, path, objects, str(csv_path)))
    return _dedupe(records, problems)


def parse_imagefolder(
    root: str | Path, masks_root: str | Path | None, problems: list[DataProblem]
) -> tuple[list[ImageRecord], list[str]]:
    """``root/<class>/<image>`` (+ ``masks_root/<class>/<stem>.png``); returns the class folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if looks_like_voc(root):
        raise DatasetError(
            f"{root} looks like a Pascal VOC folder (Annotations/*.xml), not an ImageFolder: "
            "read it with --format voc"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    records = []
    for p in sorted(root.iterdir()):
        if p.is_file() and not p.name.startswith(".") and p.name != TELLS_FILE:
            problems.append(DataProblem(p.name, "file outside the class folders", "skipped"))
    for cdir in class_dirs:
        n = 0
        for p in sorted(cdir.iterdir()):
            if p.name.startswith(".") or p.is_dir():
                continue
            key = f"{cdir.name}/{p.name}"
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                problems.append(DataProblem(key, f"not an image extension ({p.suffix})", "skipped"))
                continue
            if not _inside(p, root):
                problems.append(_outside_problem(key, key, p, root))
                continue
            mask_file = None
            if masks_root is not None:
                mask_file = Path(masks_root) / cdir.name / f"{p.stem}.png"
                if mask_file.exists() and not _inside(mask_file, Path(masks_root)):
                    problems.append(
                        DataProblem(
                            key,
                            f"region mask {mask_file} resolves outside {masks_root}",
                            "empty region",
                        )
                    )
                    mask_file = None
            records.append(
                ImageRecord(key, p, [ObjectAnn(cdir.name, mask_file=mask_file, where=key)], key)
            )
            n += 1
        if n == 0:
            problems.append(DataProblem(cdir.name, "class folder has no images", "none"))
    return records, [d.name for d in class_dirs]


# --------------------------------------------------------------------------------------------
# tells.json


def load_tells(path: str | Path | None) -> dict[str, list[dict]]:
    """``tells.json`` → {image key: [ {box, colour, class, object}, ... ]} (empty if absent).

    Our own format, so anything malformed (NaN/Infinity, a box without 4 finite numbers) is a
    ``DatasetError`` for the file rather than a guess."""
    if path is None or not Path(path).is_file():
        return {}
    path = Path(path)
    data = load_json(path, "tells.json", strict_numbers=True)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise DatasetError(f"{path}: not a valid tells.json: needs an object 'images'")
    out: dict[str, list[dict]] = {}
    for key, entries in images.items():
        if not isinstance(entries, list):
            raise DatasetError(f"{path}: images[{key!r}] must be a list of tells")
        out[str(key)] = []
        for j, t in enumerate(entries):
            box = t.get("box") if isinstance(t, dict) else None
            ok = isinstance(box, list) and len(box) == 4
            ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
            if not ok or not all(np.isfinite(v) for v in box):  # type: ignore[union-attr]
                raise DatasetError(
                    f"{path}: images[{key!r}][{j}]: 'box' must be 4 finite numbers "
                    f"[x0, y0, x1, y1], got {_short(box)}"
                )
            out[str(key)].append(dict(t, box=[int(v) for v in box]))  # type: ignore[union-attr]
    return out


# --------------------------------------------------------------------------------------------
# building samples


@dataclass
class _Unit:
    record: ImageRecord
    label: str
    objects: list[int]  # indices into record.objects: all of the label (image) or one (crop)


def _resolve_classes(
    records: list[ImageRecord],
    classes: Sequence[str] | None,
    skip_unknown: bool,
    problems: list[DataProblem],
    extra: Sequence[str] = (),
) -> list[str]:
    if classes is None:
        return sorted({o.label for r in records for o in r.objects} | set(extra))
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ConfigError(f"duplicate names in classes {classes}")
    dropped: Counter[str] = Counter()
    for r in records:
        kept = []
        for o in r.objects:
            if o.label in classes:
                kept.append(o)
            elif skip_unknown:
                dropped[o.label] += 1
            else:
                raise DatasetError(
                    f"class {o.label!r} ({o.where or r.source}) is not in the given classes "
                    f"{classes}; add it or pass skip_unknown=True"
                )
        r.objects = kept
    for name, n in sorted(dropped.items()):
        problems.append(DataProblem(name, f"{n} object(s) of a class not in classes", "skipped"))
    return classes


def _image_label(
    r: ImageRecord, rule: str, problems: list[DataProblem]
) -> tuple[str, list[int]] | None:
    if not r.objects:
        problems.append(DataProblem(r.key, "no annotated objects", "skipped"))
        return None
    names = Counter(o.label for o in r.objects)
    if len(names) == 1:
        label = next(iter(names))
    elif rule == "error":
        raise DatasetError(
            f"{r.source}: image {r.key} has objects of several classes {sorted(names)}; "
            "use mode='crop' or another label_rule"
        )
    elif rule == "unique":
        problems.append(
            DataProblem(r.key, f"objects of several classes {sorted(names)}", "skipped")
        )
        return None
    elif rule == "majority":
        (top, n1), *rest = names.most_common()
        if rest and rest[0][1] == n1:
            problems.append(DataProblem(r.key, f"no majority class in {dict(names)}", "skipped"))
            return None
        label = top
    else:  # largest
        area: dict[str, float] = defaultdict(float)
        for o in r.objects:
            b = o.bounds()
            if b is not None:
                area[o.label] += max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
        if not area:
            problems.append(DataProblem(r.key, "no object has a box to compare", "skipped"))
            return None
        label = max(sorted(area), key=lambda k: area[k])
    return label, [i for i, o in enumerate(r.objects) if o.label == label]


def _select(
    units: list[_Unit],
    class_names: list[str],
    max_per_class: int | None,
    seed: int,
    problems: list[DataProblem],
) -> list[_Unit]:
    if max_per_class is None:
        return units
    if max_per_class < 1:
        raise ConfigError(f"max_per_class must be ≥ 1, got {max_per_class}")
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(units), dtype=bool)
    labels = np.array([u.label for u in units], dtype=object)
    for name in class_names:
        idx = np.flatnonzero(labels == name)
        if len(idx) > max_per_class:
            idx = rng.choice(idx, size=max_per_class, replace=False)
            problems.append(
                DataProblem(
                    name,
                    f"{int((labels == name).sum())} samples, max_per_class={max_per_class}",
                    "subsampled",
                )
            )
        keep[idx] = True
    return [u for u, k in zip(units, keep, strict=True) if k]


def _object_mask(
    obj: ObjectAnn,
    h: int,
    w: int,
    key: str,
    problems: list[DataProblem],
    note_missing: bool,
    fail_action: str = "empty region",
    max_pixels: int | None = None,
) -> tuple[np.ndarray, Box | None]:
    """Full-image mask of one object and its clipped box (None when it has no usable extent)."""
    empty = np.zeros((h, w), dtype=bool)
    item = obj.where or key
    if obj.mask_file is not None:
        if not obj.mask_file.is_file():
            problems.append(DataProblem(item, f"no region mask {obj.mask_file}", "empty region"))
            return empty, None
        try:
            m = read_image(obj.mask_file, max_pixels)[0].max(axis=2) > 0
        except DatasetError as e:
            problems.append(DataProblem(item, str(e), "empty region"))
            return empty, None
        if m.shape != (h, w):
            problems.append(
                DataProblem(item, f"mask {m.shape[1]}×{m.shape[0]} ≠ image {w}×{h}", "resized")
            )
            m = resize_mask(m, h, w)
        return m, mask_bbox(m)
    b = obj.bounds()
    if b is None:
        if note_missing:
            problems.append(DataProblem(item, "object has no box or polygon", "empty region"))
        return empty, None
    cb, problem, action = check_box(b, h, w)
    if problem is not None:
        problems.append(DataProblem(item, problem, fail_action if cb is None else str(action)))
    if cb is None:
        return empty, None
    if obj.mask is not None:
        if obj.mask.shape != (h, w):
            problems.append(
                DataProblem(item, f"RLE size {obj.mask.shape} ≠ image {w}×{h}", fail_action)
            )
            return empty, None
        return obj.mask.copy(), cb
    if obj.polygons:
        return polygon_mask(obj.polygons, h, w), cb
    return box_mask(cb, h, w), cb


def _tell_masks(
    entries: list[dict], h: int, w: int, key: str, problems: list[DataProblem]
) -> list[tuple[dict, np.ndarray]]:
    """Masks of an image's tells; one covering more than ``MAX_TELL_FRACTION`` is dropped."""
    out = []
    for t in entries:
        box: Box = tuple(float(v) for v in t["box"])  # type: ignore[assignment]
        m = box_mask(box, h, w)
        share = float(m.mean())
        if share > MAX_TELL_FRACTION:
            problems.append(
                DataProblem(
                    key,
                    f"tell box {_fmt_box(box)} covers {share:.0%} of the {w}×{h} image "
                    f"(more than MAX_TELL_FRACTION={MAX_TELL_FRACTION:g} is not a tell)",
                    "tell dropped",
                )
            )
            continue
        if m.any():
            out.append((t, m))
    return out


def _finish_tell(
    tells: list[tuple[dict, np.ndarray]],
    transform: Callable[[np.ndarray], np.ndarray],
    own_object: int | None,
) -> tuple[np.ndarray | None, IntBox | None]:
    """Union of the tells visible after ``transform`` and the box of the most relevant one."""
    union, best = None, None
    for t, m in tells:
        tm = transform(m)
        if not tm.any():
            continue
        union = tm if union is None else union | tm
        own = own_object is not None and t.get("object") == own_object
        if best is None or own:
            best = mask_bbox(tm)
    return union, best


def build_dataset(
    records: list[ImageRecord],
    *,
    mode: str = "image",
    size: int | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    label_rule: str = "unique",
    margin: float = DEFAULT_MARGIN,
    window: float | None = None,
    pad: str = "edge",
    max_per_class: int | None = None,
    seed: int = 0,
    tells: dict[str, list[dict]] | None = None,
    problems: list[DataProblem] | None = None,
    source: str = "dataset",
    extra_classes: Sequence[str] = (),
    note_missing_geometry: bool = True,
    max_pixels: int | None = None,
) -> Dataset:
    """Turn parsed records into samples (see the module docstring for every rule)."""
    problems = [] if problems is None else problems
    pixel_cap(max_pixels)  # a bad option fails before any image is read
    tells = tells or {}
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; use one of {MODES}")
    if label_rule not in LABEL_RULES:
        raise ConfigError(f"unknown label_rule {label_rule!r}; use one of {LABEL_RULES}")
    if pad not in ("edge", "reflect", "symmetric", "constant", "wrap"):
        raise ConfigError(f"unknown pad mode {pad!r}")
    if margin < 0:
        raise ConfigError(f"margin must be ≥ 0, got {margin}")
    if window is not None and not window >= 1:
        raise ConfigError(f"window must be ≥ 1 pixel, got {window}")
    if size is not None and size < 1:
        raise ConfigError(f"size must be ≥ 1, got {size}")
    class_names = _resolve_classes(records, classes, skip_unknown, problems, extra_classes)
    index = {c: k for k, c in enumerate(class_names)}

    units: list[_Unit] = []
    if mode == "image":
        for r in records:
            got = _image_label(r, label_rule, problems)
            if got is not None:
                units.append(_Unit(r, got[0], got[1]))
    else:
        size = DEFAULT_CROP_SIZE if size is None else size
        for r in records:
            for i, o in enumerate(r.objects):
                b = o.bounds()
                if b is None:
                    problems.append(DataProblem(o.where or r.key, "object has no box", "skipped"))
                elif not (b[2] > b[0] and b[3] > b[1]):
                    problems.append(
                        DataProblem(o.where or r.key, f"degenerate box {_fmt_box(b)}", "skipped")
                    )
                elif min(b[2] - b[0], b[3] - b[1]) < MIN_CROP_BOX:
                    problems.append(
                        DataProblem(
                            o.where or r.key,
                            f"box {_fmt_box(b)} smaller than {MIN_CROP_BOX:g} px",
                            "skipped",
                        )
                    )
                else:
                    units.append(_Unit(r, o.label, [i]))
    units = _select(units, class_names, max_per_class, seed, problems)

    by_record: dict[int, list[_Unit]] = defaultdict(list)
    order: list[ImageRecord] = []
    for u in units:
        if id(u.record) not in by_record:
            order.append(u.record)
        by_record[id(u.record)].append(u)

    samples: list[Sample] = []
    target: tuple[int, int] | None = (size, size) if size is not None else None
    for r in order:
        try:
            image, conversion = read_image(r.path, max_pixels)
        except DatasetError as e:
            warnings.warn(f"skipped: {e}", DataWarning, stacklevel=2)
            problems.append(DataProblem(r.key, str(e), "skipped"))
            continue
        if conversion:
            problems.append(DataProblem(r.key, conversion, "converted"))
        h, w = image.shape[:2]
        if r.size is not None and r.size != (w, h):
            hint = " (rotated: EXIF orientation?)" if r.size == (h, w) else ""
            problems.append(
                DataProblem(
                    r.key,
                    f"annotation says {r.size[0]}×{r.size[1]} but the image is {w}×{h}{hint}; "
                    "boxes would not match",
                    "skipped",
                )
            )
            continue
        tell_list = _tell_masks(tells.get(r.key, []), h, w, r.key, problems)
        for u in by_record[id(r)]:
            if mode == "image":
                region = np.zeros((h, w), dtype=bool)
                for i in u.objects:
                    m, _ = _object_mask(
                        r.objects[i],
                        h,
                        w,
                        r.key,
                        problems,
                        note_missing_geometry,
                        max_pixels=max_pixels,
                    )
                    region |= m
                if target is None:
                    target = (h, w)
                th, tw = target
                if (h, w) != target and size is None:
                    problems.append(
                        DataProblem(r.key, f"size {w}×{h} ≠ first image's {tw}×{th}", "resized")
                    )
                img = resize_image(image, th, tw)
                region = resize_mask(region, th, tw)
                tell, tell_box = _finish_tell(
                    tell_list, lambda m, th=th, tw=tw: resize_mask(m, th, tw), None
                )
                sid = r.key
            else:
                obj_i = u.objects[0]
                m, cb = _object_mask(
                    r.objects[obj_i], h, w, r.key, problems, True, "skipped", max_pixels
                )
                if cb is None:
                    continue  # problem already recorded (box outside the image, bad RLE)
                win = crop_window(cb, h, w, margin, window)
                assert size is not None

                def tf(mm: np.ndarray, win: IntBox = win) -> np.ndarray:
                    return resize_mask(crop_array(mm, win), size, size)

                img = resize_image(crop_array(image, win, pad), size, size)
                region = tf(m)
                tell, tell_box = _finish_tell(tell_list, tf, obj_i)
                sid = f"{r.key}#{obj_i}"
            if tell is not None:
                region = region & ~tell
            samples.append(Sample(img, index[u.label], region, sid, tell, tell_box))

    if not samples:
        summary = Counter(p.problem.split(" ")[0] + " … " + p.action for p in problems)
        hint = "; ".join(f"{n}× {k}" for k, n in summary.most_common(4)) or "no images found"
        raise DatasetError(f"no usable samples in {source} (mode={mode}): {hint}")
    return Dataset(samples, class_names, problems)


# --------------------------------------------------------------------------------------------
# public readers


def read_imagefolder(
    root: str | Path,
    masks_root: str | Path | None = None,
    size: int | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    max_per_class: int | None = None,
    seed: int = 0,
    tells_path: str | Path | None = None,
    max_pixels: int | None = None,
) -> Dataset:
    """``root/<class>/*.png|jpg|…``; region masks from ``masks_root/<class>/<stem>.png`` (nonzero
    = region). Without masks every region is empty (metrics NaN), noted once for the dataset."""
    problems: list[DataProblem] = []
    records, folders = parse_imagefolder(root, masks_root, problems)
    if masks_root is None:
        problems.append(
            DataProblem(
                str(root), "no region annotation (no masks_root): region metrics are NaN", "none"
            )
        )
    tells = load_tells(tells_path or Path(root) / TELLS_FILE)
    return build_dataset(
        records,
        mode="image",
        size=size,
        classes=classes,
        skip_unknown=skip_unknown,
        max_per_class=max_per_class,
        seed=seed,
        tells=tells,
        problems=problems,
        source=str(root),
        extra_classes=folders if classes is None else (),
        note_missing_geometry=False,
        max_pixels=max_pixels,
    )


def read_voc(
    root: str | Path,
    mode: str = "image",
    size: int | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    label_rule: str = "unique",
    margin: float = DEFAULT_MARGIN,
    window: float | None = None,
    pad: str = "edge",
    max_per_class: int | None = None,
    seed: int = 0,
    tells_path: str | Path | None = None,
    max_pixels: int | None = None,
) -> Dataset:
    """Pascal VOC folder (``Annotations/*.xml``, ``JPEGImages/``); see the module docstring."""
    problems: list[DataProblem] = []
    records = parse_voc(root, problems, max_pixels=max_pixels)
    return build_dataset(
        records,
        mode=mode,
        size=size,
        classes=classes,
        skip_unknown=skip_unknown,
        label_rule=label_rule,
        margin=margin,
        window=window,
        pad=pad,
        max_per_class=max_per_class,
        seed=seed,
        tells=load_tells(tells_path or Path(root) / TELLS_FILE),
        problems=problems,
        source=str(root),
        max_pixels=max_pixels,
    )


def read_coco(
    json_path: str | Path,
    images_root: str | Path | None = None,
    mode: str = "image",
    size: int | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    label_rule: str = "unique",
    margin: float = DEFAULT_MARGIN,
    window: float | None = None,
    pad: str = "edge",
    max_per_class: int | None = None,
    seed: int = 0,
    tells_path: str | Path | None = None,
    max_pixels: int | None = None,
) -> Dataset:
    """COCO instances JSON; ``images_root`` defaults to the JSON's folder. Polygons are
    rasterised; RLE (list or compressed string) is decoded."""
    json_path = Path(json_path)
    images_root = json_path.parent if images_root is None else Path(images_root)
    problems: list[DataProblem] = []
    records = parse_coco(json_path, images_root, problems, max_pixels=max_pixels)
    return build_dataset(
        records,
        mode=mode,
        size=size,
        classes=classes,
        skip_unknown=skip_unknown,
        label_rule=label_rule,
        margin=margin,
        window=window,
        pad=pad,
        max_per_class=max_per_class,
        seed=seed,
        tells=load_tells(tells_path or json_path.parent / TELLS_FILE),
        problems=problems,
        source=str(json_path),
        max_pixels=max_pixels,
    )


def read_csv(
    csv_path: str | Path,
    images_root: str | Path | None = None,
    mode: str = "image",
    size: int | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    label_rule: str = "unique",
    margin: float = DEFAULT_MARGIN,
    window: float | None = None,
    pad: str = "edge",
    max_per_class: int | None = None,
    seed: int = 0,
    tells_path: str | Path | None = None,
    max_pixels: int | None = None,
) -> Dataset:
    """CSV ``image,label,xmin,ymin,xmax,ymax`` (``images_root`` defaults to the CSV's folder)."""
    csv_path = Path(csv_path)
    images_root = csv_path.parent if images_root is None else Path(images_root)
    problems: list[DataProblem] = []
    records = parse_csv(csv_path, images_root, problems, max_pixels=max_pixels)
    return build_dataset(
        records,
        mode=mode,
        size=size,
        classes=classes,
        skip_unknown=skip_unknown,
        label_rule=label_rule,
        margin=margin,
        window=window,
        pad=pad,
        max_per_class=max_per_class,
        seed=seed,
        tells=load_tells(tells_path or csv_path.parent / TELLS_FILE),
        problems=problems,
        source=str(csv_path),
        max_pixels=max_pixels,
    )


READERS: dict[str, Callable[..., Dataset]] = {
    "imagefolder": read_imagefolder,
    "voc": read_voc,
    "coco": read_coco,
    "csv": read_csv,
}


def looks_like_voc(path: str | Path) -> bool:
    """A folder with ``Annotations/*.xml``: Pascal VOC (read as ImageFolder, its
    ``Annotations`` and ``JPEGImages`` folders would become two bogus classes)."""
    ann = Path(path) / "Annotations"
    return ann.is_dir() and next(ann.glob("*.xml"), None) is not None


def _has_images(folder: Path) -> bool:
    try:
        return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir())
    except OSError:
        return False


def detect_format(path: str | Path) -> str:
    """The reader for ``path`` when no format is given: a ``.json`` file → coco, a ``.csv``
    file → csv, a folder with ``Annotations/`` → voc, a folder of class subfolders holding
    images → imagefolder. Anything else is a ``DatasetError`` asking for ``--format``."""
    p = Path(path)
    if p.is_file():
        kind = {".json": "coco", ".csv": "csv"}.get(p.suffix.lower())
        if kind is None:
            raise DatasetError(
                f"cannot tell the dataset format of {p}: expected a .json (COCO) or .csv file "
                "or a folder; pass --format"
            )
        return kind
    if not p.is_dir():
        raise DatasetError(f"dataset not found: {p}")
    if (p / "Annotations").is_dir():
        return "voc"
    subdirs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if any(_has_images(d) for d in subdirs):
        return "imagefolder"
    nested = [d.name for d in subdirs if (d / "Annotations").is_dir()]
    hint = f" (VOC folder inside: {p / nested[0]}?)" if nested else ""
    raise DatasetError(
        f"cannot tell the dataset format of {p}: no Annotations/ folder (voc) and no class "
        f"subfolders with images (imagefolder){hint}; pass --format"
    )


def read_dataset(path: str | Path, format: str | None = None, **options) -> Dataset:
    """Read ``path`` with the reader registered for ``format`` (see ``READERS``); without a
    format, ``detect_format`` picks it."""
    if format is None:
        format = detect_format(path)
    if format not in READERS:
        raise ConfigError(f"unknown dataset format {format!r}; known: {sorted(READERS)}")
    try:
        return READERS[format](path, **options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"option not supported by the {format} reader: {e}") from e
        raise
