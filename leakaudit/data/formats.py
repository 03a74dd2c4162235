"""Readers for user datasets: ImageFolder, Pascal VOC, COCO and CSV boxes → ``Dataset``.

Every reader returns samples of one size (stacking needs it) with a region mask per sample, and
lists everything it skipped or altered in ``dataset.problems``; nothing is dropped silently.

Layout: this module holds ``read_dataset`` (format from ``READERS``, or ``detect_format`` when
none is given) and the four ``read_*`` wrappers, which take ``ReadOptions`` (``options.py``) or
the same names as keywords. Parsing is per format (``voc.py``, ``coco.py``, ``csvfmt.py``,
``imagefolder.py``) into ``records.py``'s ``ImageRecord``s; ``build.py`` turns records into
samples using ``geometry.py``; ``images.py`` decodes pixels. Old names are re-exported here.

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
* A ``tells.json`` written by ``leakaudit.data.inject`` (found beside the annotations, or given as
  ``tells_path``) fills ``Sample.tell``/``tell_box``, mapped through cropping and resizing; tell
  pixels are removed from the region, as ``tells.plant`` does. A tell box covering more than
  ``MAX_TELL_FRACTION`` (25 %) of its image is dropped and counted: a "tell" that large is most
  of the picture, so attribution on it says nothing about cheating (a whole-image box would
  make every model look leaky). Real tells (stickers, watermarks, rulers) are far smaller.
* Image paths are resolved (symlinks followed) and must stay inside the dataset's image folder
  (VOC ``JPEGImages``, the ImageFolder root, the COCO/CSV ``images_root``), itself resolved, so a
  linked image folder works; an absolute path, a ``../`` path or a link from inside leading
  outside (an image, or an ImageFolder class folder) is a counted skip, never read. Two
  annotations of the same image file (two VOC XMLs naming it, a COCO image id listed twice,
  ``a.png`` and ``./a.png`` in a CSV) keep the first and count the others as skipped, so no
  image is scored twice.
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
* Names (``names.py``): a class folder, file name or COCO name that is not valid UTF-8 is shown
  with ``\\xNN`` escapes from the moment it is read (counted); the file is still opened by its
  raw name. A class name that is or holds a path separator (``/``, ``\\``, NUL, ``.``, ``..``)
  and class names equal up to Unicode normalisation or letter case are counted, never merged;
  ``inject`` and ``train`` refuse the former. Fewer than two classes with images is counted.
* An image whose shorter side is under ``MIN_IMAGE_SIDE`` (8 px, the smallest ``--size``) is a
  counted skip: it holds too little to explain. A multi-frame file gives its first frame
  (counted as a conversion).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from leakaudit.data.build import (
    DEFAULT_CROP_SIZE,
    LABEL_RULES,
    MAX_TELL_FRACTION,
    MIN_CROP_BOX,
    MODES,
    DataWarning,
    _image_label,
    _resolve_classes,
    build_dataset,
)
from leakaudit.data.coco import parse_coco
from leakaudit.data.csvfmt import CSV_COLUMNS, parse_csv
from leakaudit.data.geometry import (
    CLIP_TOLERANCE,
    DEFAULT_MARGIN,
    Box,
    IntBox,
    box_mask,
    check_box,
    clip_box,
    crop_array,
    crop_window,
    mask_bbox,
    polygon_mask,
)
from leakaudit.data.imagefolder import parse_imagefolder
from leakaudit.data.images import IMAGE_EXTENSIONS
from leakaudit.data.options import ReadOptions, reader_options
from leakaudit.data.records import TELLS_FILE, ImageRecord, ObjectAnn, load_tells
from leakaudit.data.samples import DataProblem, Dataset
from leakaudit.data.voc import looks_like_voc, parse_voc
from leakaudit.errors import ConfigError, DatasetError

# Re-exported: callers import these from here (inject uses the parsers and two label helpers).
__all__ = [
    "CLIP_TOLERANCE",
    "CSV_COLUMNS",
    "DEFAULT_CROP_SIZE",
    "DEFAULT_MARGIN",
    "LABEL_RULES",
    "MAX_TELL_FRACTION",
    "MIN_CROP_BOX",
    "MODES",
    "READERS",
    "TELLS_FILE",
    "Box",
    "DataWarning",
    "ImageRecord",
    "IntBox",
    "ObjectAnn",
    "ReadOptions",
    "_image_label",
    "_resolve_classes",
    "box_mask",
    "build_dataset",
    "check_box",
    "clip_box",
    "crop_array",
    "crop_window",
    "detect_format",
    "load_tells",
    "looks_like_voc",
    "mask_bbox",
    "parse_coco",
    "parse_csv",
    "parse_imagefolder",
    "parse_voc",
    "polygon_mask",
    "read_coco",
    "read_csv",
    "read_dataset",
    "read_imagefolder",
    "read_voc",
]


def read_imagefolder(
    root: str | Path,
    masks_root: str | Path | None = None,
    *,
    options: ReadOptions | None = None,
    **overrides: Any,
) -> Dataset:
    """``root/<class>/*.png|jpg|…``; region masks from ``masks_root/<class>/<stem>.png`` (nonzero
    = region). Without masks every region is empty (metrics NaN), noted once for the dataset.
    ``overrides`` are ``ReadOptions`` fields (the crop and label options do not apply)."""
    opts = reader_options("imagefolder", options, overrides)
    problems: list[DataProblem] = []
    records, folders = parse_imagefolder(root, masks_root, problems)
    if masks_root is None:
        problems.append(
            DataProblem(
                str(root), "no region annotation (no masks_root): region metrics are NaN", "none"
            )
        )
    return build_dataset(
        records,
        **opts.build_kwargs(),
        tells=load_tells(opts.tells_path or Path(root) / TELLS_FILE),
        problems=problems,
        source=str(root),
        extra_classes=folders if opts.classes is None else (),
        note_missing_geometry=False,
    )


def read_voc(root: str | Path, *, options: ReadOptions | None = None, **overrides: Any) -> Dataset:
    """Pascal VOC folder (``Annotations/*.xml``, ``JPEGImages/``); see the module docstring.
    ``overrides`` are ``ReadOptions`` fields."""
    opts = reader_options("voc", options, overrides)
    problems: list[DataProblem] = []
    records = parse_voc(root, problems, max_pixels=opts.max_pixels)
    return build_dataset(
        records,
        **opts.build_kwargs(),
        tells=load_tells(opts.tells_path or Path(root) / TELLS_FILE),
        problems=problems,
        source=str(root),
    )


def read_coco(
    json_path: str | Path,
    images_root: str | Path | None = None,
    *,
    options: ReadOptions | None = None,
    **overrides: Any,
) -> Dataset:
    """COCO instances JSON; ``images_root`` defaults to the JSON's folder. Polygons are
    rasterised; RLE (list or compressed string) is decoded. ``overrides``: ``ReadOptions``."""
    opts = reader_options("coco", options, overrides)
    json_path = Path(json_path)
    images_root = json_path.parent if images_root is None else Path(images_root)
    problems: list[DataProblem] = []
    records = parse_coco(json_path, images_root, problems, max_pixels=opts.max_pixels)
    return build_dataset(
        records,
        **opts.build_kwargs(),
        tells=load_tells(opts.tells_path or json_path.parent / TELLS_FILE),
        problems=problems,
        source=str(json_path),
    )


def read_csv(
    csv_path: str | Path,
    images_root: str | Path | None = None,
    *,
    options: ReadOptions | None = None,
    **overrides: Any,
) -> Dataset:
    """CSV ``image,label,xmin,ymin,xmax,ymax`` (``images_root`` defaults to the CSV's folder).
    ``overrides`` are ``ReadOptions`` fields."""
    opts = reader_options("csv", options, overrides)
    csv_path = Path(csv_path)
    images_root = csv_path.parent if images_root is None else Path(images_root)
    problems: list[DataProblem] = []
    records = parse_csv(csv_path, images_root, problems, max_pixels=opts.max_pixels)
    return build_dataset(
        records,
        **opts.build_kwargs(),
        tells=load_tells(opts.tells_path or csv_path.parent / TELLS_FILE),
        problems=problems,
        source=str(csv_path),
    )


READERS: dict[str, Callable[..., Dataset]] = {
    "imagefolder": read_imagefolder,
    "voc": read_voc,
    "coco": read_coco,
    "csv": read_csv,
}


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
