"""Pascal VOC: ``Annotations/*.xml`` + ``JPEGImages/`` → ``ImageRecord``s (1-based boxes →
pixel edges).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from leakaudit.data.images import IMAGE_EXTENSIONS, over_cap, pixel_cap
from leakaudit.data.names import display_name, shown
from leakaudit.data.records import (
    ImageRecord,
    ObjectAnn,
    _declared_size,
    _dedupe,
    _num,
    _outside_problem,
)
from leakaudit.data.samples import DataProblem
from leakaudit.errors import DatasetError
from leakaudit.paths import is_within


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
        item = display_name(str(xml_path.relative_to(root)))
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
        if filename is not None and not is_within(img_dir / filename, img_dir):
            problems.append(_outside_problem(item, filename, img_dir / filename, img_dir))
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
        if not is_within(path, img_dir):
            problems.append(_outside_problem(item, path.name, path, img_dir))
            continue
        if filename is None or path != img_dir / filename:
            said = f"<filename> {filename} not found" if filename else "no <filename>"
            problems.append(DataProblem(item, f"{said}; used {path.name}", "used fallback"))
        too_big = over_cap(*declared, cap) if declared else None
        if too_big:
            problems.append(DataProblem(item, f"<size> {too_big}", "skipped"))
            continue
        key = shown(path.name, "image file name", item, problems)
        records.append(ImageRecord(key, path, objects, str(xml_path), size=declared))
    if not records and not problems:
        raise DatasetError(f"no annotations found in {ann_dir}")
    return _dedupe(records, problems)


def looks_like_voc(path: str | Path) -> bool:
    """A folder with ``Annotations/*.xml``: Pascal VOC (read as ImageFolder, its
    ``Annotations`` and ``JPEGImages`` folders would become two bogus classes)."""
    ann = Path(path) / "Annotations"
    return ann.is_dir() and next(ann.glob("*.xml"), None) is not None
