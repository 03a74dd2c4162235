"""Readers for user datasets: ImageFolder, Pascal VOC, COCO and CSV boxes → ``Dataset``.

Every reader returns samples of one size (stacking needs it) with a region mask per sample, and
lists everything it skipped or altered in ``dataset.problems``; nothing is dropped silently.

Layout: this module holds ``DATASET_FORMATS`` (name → ``DatasetFormat``: reader, annotation
parser, detection, the writer of a poisoned copy, description; the one list every reader,
``detect_format``, ``inject`` and the CLI's ``--format`` choices come from), ``read_dataset``
(format from ``DATASET_FORMATS``, or ``detect_format`` when none is given) and the four
``read_*`` wrappers, which take ``ReadOptions`` (``options.py``) or
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

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
from leakaudit.data.writers import coco_copy, csv_copy, imagefolder_copy, voc_copy
from leakaudit.errors import ConfigError, DatasetError

# Re-exported: callers import these from here (inject uses the parsers and two label helpers).
__all__ = [
    "CLIP_TOLERANCE",
    "CSV_COLUMNS",
    "DATASET_FORMATS",
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
    "DatasetFormat",
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
    "register_format",
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


Parse = Callable[[Path, Path | None, list[DataProblem]], tuple[list[ImageRecord], list[str]]]
WriteCopy = Callable[[Path, Path, Sequence[ImageRecord], Mapping[str, str]], Path]


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset format, everything the package does with it in one place.

    ``read(path, [images_root], **ReadOptions fields) → Dataset``; ``parse(path, images_root,
    problems) → (records, class folders)`` reads the annotations only (no image decoded; what
    ``inject`` copies); ``detect(path) → bool`` recognises a ``path`` of kind ``on`` ("file" or
    "folder"; None: never detected), tried by ascending ``detect_order``; ``needs`` names what
    detection looks for, in its error; ``write_copy(src, out, records, renames) → read path``
    writes the annotations of a poisoned copy whose images (``images_dir`` under ``out``, keys
    as in the records) were renamed by ``renames`` (None: ``inject`` cannot copy it);
    ``boxes``: the format has objects (``--mode crop``, per-object tells); ``subfolders``: its
    folders a newcomer may give as ``--data`` by mistake (the error then names the root)."""

    name: str
    read: Callable[..., Dataset]
    parse: Parse
    detect: Callable[[Path], bool] | None
    write_copy: WriteCopy | None
    description: str
    on: Literal["file", "folder"] = "file"
    needs: str = ""
    detect_order: int = 50
    boxes: bool = True
    images_dir: str = ""
    subfolders: tuple[str, ...] = ()


DATASET_FORMATS: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Add (or replace) a dataset format: readers, detection, ``inject`` and ``--format``
    choices all follow."""
    DATASET_FORMATS[fmt.name] = fmt
    return fmt


def format_names(boxes: bool | None = None) -> list[str]:
    """Registered format names (only those with, or without, objects when ``boxes`` is given)."""
    return [n for n, f in DATASET_FORMATS.items() if boxes is None or f.boxes == boxes]


class _Readers(Mapping[str, Callable[..., Dataset]]):
    """``READERS``: name → reader, a live view of ``DATASET_FORMATS`` (not a second list)."""

    def __getitem__(self, name: str) -> Callable[..., Dataset]:
        return DATASET_FORMATS[name].read

    def __iter__(self) -> Iterator[str]:
        return iter(DATASET_FORMATS)

    def __len__(self) -> int:
        return len(DATASET_FORMATS)


READERS: Mapping[str, Callable[..., Dataset]] = _Readers()


def _has_images(folder: Path) -> bool:
    try:
        return any(f.suffix.lower() in IMAGE_EXTENSIONS for f in folder.iterdir())
    except OSError:
        return False


def _class_folders_with_images(p: Path) -> bool:
    subdirs = (d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    return any(_has_images(d) for d in subdirs)


def _suffix(ext: str) -> Callable[[Path], bool]:
    return lambda p: p.suffix.lower() == ext


def _parse_imagefolder(src: Path, root: Path | None, problems: list[DataProblem]):
    return parse_imagefolder(src, None, problems)


def _parse_voc(src: Path, root: Path | None, problems: list[DataProblem]):
    return parse_voc(src, problems), []


def _parse_coco(src: Path, root: Path | None, problems: list[DataProblem]):
    return parse_coco(src, root or src.parent, problems), []


def _parse_csv(src: Path, root: Path | None, problems: list[DataProblem]):
    return parse_csv(src, root or src.parent, problems), []


VOC_FOLDERS = ("Annotations", "JPEGImages", "ImageSets", "SegmentationClass", "SegmentationObject")

register_format(DatasetFormat(
    "imagefolder", read_imagefolder, _parse_imagefolder, _class_folders_with_images,
    imagefolder_copy, "root/<class>/*.png|jpg (whole images)", on="folder",
    needs="class subfolders with images", detect_order=90, boxes=False,
))  # fmt: skip
register_format(DatasetFormat(
    "voc", read_voc, _parse_voc, lambda p: (p / "Annotations").is_dir(), voc_copy,
    "Pascal VOC root: Annotations/*.xml + JPEGImages/", on="folder", needs="Annotations/ folder",
    detect_order=10, images_dir="JPEGImages", subfolders=VOC_FOLDERS,
))  # fmt: skip
register_format(DatasetFormat(
    "coco", read_coco, _parse_coco, _suffix(".json"), coco_copy,
    "COCO instances .json (images beside it or --images-root)", needs=".json", detect_order=20,
))  # fmt: skip
register_format(DatasetFormat(
    "csv", read_csv, _parse_csv, _suffix(".csv"), csv_copy,
    "CSV image,label,xmin,ymin,xmax,ymax", needs=".csv", detect_order=30,
))  # fmt: skip


def _detected(p: Path) -> str | None:
    kind = "file" if p.is_file() else "folder"
    order = sorted(DATASET_FORMATS.values(), key=lambda f: f.detect_order)
    return next((f.name for f in order if f.on == kind and f.detect and f.detect(p)), None)


def _needs(kind: str) -> list[str]:
    order = sorted(DATASET_FORMATS.values(), key=lambda f: f.detect_order)
    return [f"{f.needs} ({f.name})" for f in order if f.on == kind and f.detect]


def detect_format(path: str | Path) -> str:
    """The reader for ``path`` when no format is given: each registered format's ``detect``
    (a ``.json`` file → coco, a ``.csv`` file → csv, a folder with ``Annotations/`` → voc, a
    folder of class subfolders holding images → imagefolder). Anything else is a
    ``DatasetError`` asking for ``--format``, with a hint when a neighbour is a dataset."""
    p = Path(path)
    if p.is_file():
        kind = _detected(p)
        if kind is None:
            raise DatasetError(
                f"cannot tell the dataset format of {p}: expected a {' or '.join(_needs('file'))} "
                "file or a folder; pass --format"
            )
        return kind
    if not p.is_dir():
        raise DatasetError(f"dataset not found: {p}")
    kind = _detected(p)
    if kind is not None:
        return kind
    raise DatasetError(
        f"cannot tell the dataset format of {p}: no {' and no '.join(_needs('folder'))}"
        f"{_hint(p)}; pass --format"
    )


def _hint(p: Path) -> str:
    """Where the dataset probably is: a VOC folder inside ``p``; ``p``'s parent when that is
    a dataset (``VOC/JPEGImages``, ``VOC/Annotations``, one class folder); the one annotation
    file inside ``p`` (a COCO ``annotations/`` folder: its single ``instances_*.json``)."""
    subdirs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    nested = [d.name for d in subdirs if (d / "Annotations").is_dir()]
    if nested:
        return f" (VOC folder inside: {p / nested[0]}?)"
    here = p.resolve()
    kind = _detected(here.parent) if here.parent != here else None
    parts = {n.lower() for n in DATASET_FORMATS[kind].subfolders} if kind else set()
    if here.name.lower() in parts:
        shown = p.parent if p.name not in ("", ".", "..") else here.parent
        return f" (the {here.name}/ folder of a {kind} dataset: did you mean --data {shown}?)"
    files = sorted(f for f in p.iterdir() if f.is_file() and _detected(f) is not None)
    if len(files) > 1:  # COCO's annotations/: instances_*, captions_*, person_keypoints_*
        files = [f for f in files if f.name.startswith("instances_")]
    if len(files) == 1:
        return f" (did you mean --data {files[0]} --format {_detected(files[0])}?)"
    return ""


def read_dataset(path: str | Path, format: str | None = None, **options) -> Dataset:
    """Read ``path`` with the reader registered for ``format`` (see ``DATASET_FORMATS``);
    without a format, ``detect_format`` picks it."""
    if format is None:
        format = detect_format(path)
    if format not in DATASET_FORMATS:
        raise ConfigError(f"unknown dataset format {format!r}; known: {sorted(DATASET_FORMATS)}")
    try:
        return DATASET_FORMATS[format].read(path, **options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ConfigError(f"option not supported by the {format} reader: {e}") from e
        raise
