"""Parsed annotations (no pixels yet) and the checks every parser shares.

Parsers turn annotation files into ``ImageRecord``s; the helpers here hold every format to
the same rules (see ``leakaudit.data.formats``): numbers finite, text UTF-8, image paths
inside the dataset root, each image annotated once, malformed files one-line errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leakaudit.data.geometry import Box
from leakaudit.data.images import require_regular_file
from leakaudit.data.samples import DataProblem
from leakaudit.errors import DatasetError
from leakaudit.paths import resolved as _resolved

TELLS_FILE = "tells.json"


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


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _outside_problem(item: str, name: str, path: Path, root: Path) -> DataProblem:
    """The counted skip for a ``path`` that ``paths.is_within`` refused (unresolvable, outside)."""
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


def _whole(value: object) -> int | None:
    """A JSON whole number (``3`` or ``3.0``) as int; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def read_text(path: Path, what: str) -> str:
    """A UTF-8 text file (BOM accepted); anything else is a one-line ``DatasetError`` naming
    the file and where the first bad byte is."""
    try:
        require_regular_file(path, what)
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
