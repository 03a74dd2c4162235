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
  pixels are removed from the region, as ``tells.plant`` does.
"""

from __future__ import annotations

import csv
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


def parse_voc(root: str | Path, problems: list[DataProblem]) -> list[ImageRecord]:
    """``root/Annotations/*.xml`` + ``root/JPEGImages``; VOC 1-based boxes → pixel edges."""
    root = Path(root)
    ann_dir, img_dir = root / "Annotations", root / "JPEGImages"
    if not ann_dir.is_dir():
        raise DatasetError(f"not a Pascal VOC folder: {ann_dir} does not exist")
    records = []
    for xml_path in sorted(ann_dir.glob("*.xml")):
        try:
            tree = ET.parse(xml_path)
        except ET.ParseError as e:
            line, col = e.position
            raise DatasetError(f"{xml_path}: malformed XML at line {line}, column {col}") from e
        ann = tree.getroot()
        filename = (ann.findtext("filename") or "").strip() or None
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
        path = _find_image(img_dir, filename, xml_path.stem)
        if path is None:
            problems.append(
                DataProblem(
                    str(xml_path.relative_to(root)),
                    f"annotation points at a missing image {filename or xml_path.stem}",
                    "skipped",
                )
            )
            continue
        records.append(ImageRecord(path.name, path, objects, str(xml_path)))
    if not records and not problems:
        raise DatasetError(f"no annotations found in {ann_dir}")
    return records


def _rle_decode(rle: dict, where: str) -> np.ndarray:
    """COCO RLE (list counts or the compressed string form) → bool mask of ``size`` (h, w)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{where}: RLE segmentation needs 'size' [h, w] and 'counts'") from e
    if isinstance(counts, str):
        counts = _rle_string_counts(counts)
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


def _rle_string_counts(s: str) -> list[int]:
    """Decode the LEB128-like string of compressed COCO RLE (as pycocotools' rleFrString)."""
    counts: list[int] = []
    i = 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[i]) - 48
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


def parse_coco(
    json_path: str | Path, images_root: str | Path, problems: list[DataProblem]
) -> list[ImageRecord]:
    """COCO instances JSON: boxes, polygons and RLE masks (``images_root`` holds file_name)."""
    json_path, images_root = Path(json_path), Path(images_root)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise DatasetError(f"COCO file not found: {json_path}") from e
    except json.JSONDecodeError as e:
        raise DatasetError(
            f"{json_path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DatasetError(f"{json_path}: needs lists 'images', 'annotations' and 'categories'")
    try:
        cats = {c["id"]: str(c["name"]).strip() for c in data["categories"]}
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{json_path}: every category needs 'id' and 'name'") from e
    images: dict = {}
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DatasetError(f"{json_path}: images[{i}] needs 'id' and 'file_name'")
        images[im["id"]] = (str(im["file_name"]), [])
    for i, a in enumerate(data["annotations"]):
        where = f"{json_path.name} annotations[{i}]"
        if not isinstance(a, dict) or "image_id" not in a or "category_id" not in a:
            raise DatasetError(f"{json_path}: annotations[{i}] needs 'image_id' and 'category_id'")
        where += f" (id {a.get('id', '?')})"
        if a["category_id"] not in cats:
            raise DatasetError(f"{json_path}: {where} has unknown category_id {a['category_id']}")
        if a["image_id"] not in images:
            problems.append(
                DataProblem(
                    where, f"annotation points at unknown image id {a['image_id']}", "skipped"
                )
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
        obj = ObjectAnn(cats[a["category_id"]], box=box, polygons=polygons, mask=mask, where=where)
        images[a["image_id"]][1].append(obj)
    records = []
    for file_name, objects in images.values():
        path = images_root / file_name
        if not path.is_file():
            problems.append(
                DataProblem(file_name, "annotation points at a missing image", "skipped")
            )
            continue
        records.append(ImageRecord(file_name, path, objects, str(json_path)))
    return records


CSV_COLUMNS = ("image", "label", "xmin", "ymin", "xmax", "ymax")


def parse_csv(
    csv_path: str | Path, images_root: str | Path, problems: list[DataProblem]
) -> list[ImageRecord]:
    """``image,label,xmin,ymin,xmax,ymax`` rows (pixel edges, 0-based, end exclusive); several
    rows per image allowed; empty box fields mean "label only, no region"."""
    csv_path, images_root = Path(csv_path), Path(images_root)
    try:
        fh = csv_path.open(newline="", encoding="utf-8")
    except FileNotFoundError as e:
        raise DatasetError(f"CSV file not found: {csv_path}") from e
    grouped: dict[str, list[ObjectAnn]] = {}
    with fh:
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
        if not path.is_file():
            problems.append(DataProblem(image, "annotation points at a missing image", "skipped"))
            continue
        records.append(ImageRecord(image, path, objects, str(csv_path)))
    return records


def parse_imagefolder(
    root: str | Path, masks_root: str | Path | None, problems: list[DataProblem]
) -> tuple[list[ImageRecord], list[str]]:
    """``root/<class>/<image>`` (+ ``masks_root/<class>/<stem>.png``); returns the class folders."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
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
            mask_file = None
            if masks_root is not None:
                mask_file = Path(masks_root) / cdir.name / f"{p.stem}.png"
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
    """``tells.json`` → {image key: [ {box, colour, class, object}, ... ]} (empty if absent)."""
    if path is None or not Path(path).is_file():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        images = data["images"]
        return {
            str(k): [dict(t, box=[int(v) for v in t["box"]]) for t in v] for k, v in images.items()
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: not a valid tells.json: {e}") from e


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
) -> tuple[np.ndarray, Box | None]:
    """Full-image mask of one object and its clipped box (None when it has no usable extent)."""
    empty = np.zeros((h, w), dtype=bool)
    item = obj.where or key
    if obj.mask_file is not None:
        if not obj.mask_file.is_file():
            problems.append(DataProblem(item, f"no region mask {obj.mask_file}", "empty region"))
            return empty, None
        try:
            m = read_image(obj.mask_file)[0].max(axis=2) > 0
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


def _tell_masks(entries: list[dict], h: int, w: int) -> list[tuple[dict, np.ndarray]]:
    out = []
    for t in entries:
        m = box_mask(tuple(float(v) for v in t["box"]), h, w)  # type: ignore[arg-type]
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
) -> Dataset:
    """Turn parsed records into samples (see the module docstring for every rule)."""
    problems = [] if problems is None else problems
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
            image, conversion = read_image(r.path)
        except DatasetError as e:
            warnings.warn(f"skipped: {e}", DataWarning, stacklevel=2)
            problems.append(DataProblem(r.key, str(e), "skipped"))
            continue
        if conversion:
            problems.append(DataProblem(r.key, conversion, "converted"))
        h, w = image.shape[:2]
        tell_list = _tell_masks(tells.get(r.key, []), h, w)
        for u in by_record[id(r)]:
            if mode == "image":
                region = np.zeros((h, w), dtype=bool)
                for i in u.objects:
                    m, _ = _object_mask(r.objects[i], h, w, r.key, problems, note_missing_geometry)
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
                m, cb = _object_mask(r.objects[obj_i], h, w, r.key, problems, True, "skipped")
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
) -> Dataset:
    """Pascal VOC folder (``Annotations/*.xml``, ``JPEGImages/``); see the module docstring."""
    problems: list[DataProblem] = []
    records = parse_voc(root, problems)
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
) -> Dataset:
    """COCO instances JSON; ``images_root`` defaults to the JSON's folder. Polygons are
    rasterised; RLE (list or compressed string) is decoded."""
    json_path = Path(json_path)
    images_root = json_path.parent if images_root is None else Path(images_root)
    problems: list[DataProblem] = []
    records = parse_coco(json_path, images_root, problems)
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
) -> Dataset:
    """CSV ``image,label,xmin,ymin,xmax,ymax`` (``images_root`` defaults to the CSV's folder)."""
    csv_path = Path(csv_path)
    images_root = csv_path.parent if images_root is None else Path(images_root)
    problems: list[DataProblem] = []
    records = parse_csv(csv_path, images_root, problems)
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
    )


READERS: dict[str, Callable[..., Dataset]] = {
    "imagefolder": read_imagefolder,
    "voc": read_voc,
    "coco": read_coco,
    "csv": read_csv,
}


def read_dataset(path: str | Path, format: str, **options) -> Dataset:
    """Read ``path`` with the reader registered for ``format`` (see ``READERS``)."""
    if format not in READERS:
        raise ConfigError(f"unknown dataset format {format!r}; known: {sorted(READERS)}")
    try:
        return READERS[format](path, **options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"option not supported by the {format} reader: {e}") from e
        raise
