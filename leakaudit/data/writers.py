"""Writing a dataset copy in its own format with renamed image files, plus ``tells.json``.

Used by ``leakaudit.data.inject``: images are re-written as PNG (lossless, so a planted tell
keeps its exact pixels), which changes file extensions; these writers copy the annotation files and
rewrite only the image references. Everything else in the annotation files is kept as it was.
Each format's ``*_copy`` function is its ``DatasetFormat.write_copy`` (``formats.py``).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.data.images import save_png
from leakaudit.data.records import ImageRecord
from leakaudit.errors import DatasetError
from leakaudit.paths import atomic_path, write_atomic


def png_name(name: str, taken: set[str]) -> str:
    """``dir/a.jpg`` → ``dir/a.png``; ``dir/a.jpg.png`` when ``dir/a.png`` is already used."""
    p = Path(name)
    new = str(p.with_suffix(".png")) if p.suffix else f"{name}.png"
    if new in taken and new != name:
        new = f"{name}.png"
    taken.add(new)
    return new.replace("\\", "/")


def save_png_atomic(image: np.ndarray, path: Path, root: Path | None = None) -> None:
    """``save_png`` all or nothing, never through a link (a copy cut short keeps no half PNG)."""
    with atomic_path(path, root) as tmp:
        save_png(image, tmp)


def write_voc_annotations(src_root: Path, out_root: Path, renames: Mapping[Path, str]) -> None:
    """Copy ``Annotations/*.xml`` (``<filename>`` rewritten where ``renames`` says) and any
    ``ImageSets`` folder; ``renames`` maps an XML path to its image's new file name."""
    (out_root / "Annotations").mkdir(parents=True, exist_ok=True)
    for xml_path in sorted((src_root / "Annotations").glob("*.xml")):
        target = out_root / "Annotations" / xml_path.name
        new = renames.get(xml_path)
        if new is None:
            with atomic_path(target) as tmp:
                shutil.copy2(xml_path, tmp)
            continue
        try:
            tree = ET.parse(xml_path)
        except ET.ParseError as e:
            raise DatasetError(f"{xml_path}: malformed XML: {e}") from e
        root = tree.getroot()
        fn = root.find("filename")
        if fn is None:
            fn = ET.SubElement(root, "filename")
        fn.text = new
        path_el = root.find("path")
        if path_el is not None:
            path_el.text = new
        with atomic_path(target) as tmp:
            tree.write(tmp, encoding="utf-8", xml_declaration=False)
    sets = src_root / "ImageSets"
    for src in sorted(sets.rglob("*")) if sets.is_dir() else []:
        if src.is_file():  # as copytree did: a linked file is copied by its content
            with atomic_path(out_root / src.relative_to(src_root), out_root) as tmp:
                shutil.copy2(src, tmp)


def write_coco_annotations(json_path: Path, out_json: Path, renames: Mapping[str, str]) -> None:
    """Copy a COCO JSON with ``images[].file_name`` rewritten through ``renames``."""
    data = json.loads(json_path.read_text(encoding="utf-8-sig"))
    for im in data.get("images", []):
        if isinstance(im, dict) and str(im.get("file_name")) in renames:
            im["file_name"] = renames[str(im["file_name"])]
    write_atomic(out_json, json.dumps(data))


def write_csv_annotations(csv_path: Path, out_csv: Path, renames: Mapping[str, str]) -> None:
    """Copy a box CSV with its ``image`` column rewritten through ``renames``."""
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    fh = io.StringIO(newline="")
    writer = csv.DictWriter(fh, fieldnames=fields)
    writer.writeheader()
    for row in rows:
        image = (row.get("image") or "").strip()
        row["image"] = renames.get(image, row.get("image"))
        writer.writerow(row)
    write_atomic(out_csv, fh.getvalue())


def write_tells_json(path: Path, meta: Mapping[str, Any], images: Mapping[str, list]) -> None:
    """``{..meta, "images": {relative image path: [ {box, colour, class, ...} ]}}``."""
    write_atomic(path, json.dumps({**meta, "images": images}, indent=1) + "\n")


# ``DatasetFormat.write_copy`` of each built-in format: (source, copy folder, parsed records,
# old image key → new key) → the path ``read_dataset`` reads the copy from.


def imagefolder_copy(src: Path, out: Path, records: Sequence[ImageRecord],
                     renames: Mapping[str, str]) -> Path:  # fmt: skip
    """Nothing beside the images: the class folders are the annotations."""
    return out


def voc_copy(src: Path, out: Path, records: Sequence[ImageRecord],
             renames: Mapping[str, str]) -> Path:  # fmt: skip
    by_xml = {Path(r.source): renames[r.key] for r in records if r.key in renames}
    write_voc_annotations(src, out, by_xml)
    return out


def coco_copy(src: Path, out: Path, records: Sequence[ImageRecord],
              renames: Mapping[str, str]) -> Path:  # fmt: skip
    write_coco_annotations(src, out / src.name, renames)
    return out / src.name


def csv_copy(src: Path, out: Path, records: Sequence[ImageRecord],
             renames: Mapping[str, str]) -> Path:  # fmt: skip
    write_csv_annotations(src, out / src.name, renames)
    return out / src.name
