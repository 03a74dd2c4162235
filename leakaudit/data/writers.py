"""Writing a dataset copy in its own format with renamed image files, plus ``tells.json``.

Used by ``leakaudit.data.inject``: images are re-written as PNG (lossless, so a planted tell
keeps its exact pixels), which changes file extensions; these writers copy the annotation files and
rewrite only the image references. Everything else in the annotation files is kept as it was.
"""

from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from leakaudit.errors import DatasetError


def png_name(name: str, taken: set[str]) -> str:
    """``dir/a.jpg`` → ``dir/a.png``; ``dir/a.jpg.png`` when ``dir/a.png`` is already used."""
    p = Path(name)
    new = str(p.with_suffix(".png")) if p.suffix else f"{name}.png"
    if new in taken and new != name:
        new = f"{name}.png"
    taken.add(new)
    return new.replace("\\", "/")


def write_voc_annotations(src_root: Path, out_root: Path, renames: Mapping[Path, str]) -> None:
    """Copy ``Annotations/*.xml`` (``<filename>`` rewritten where ``renames`` says) and any
    ``ImageSets`` folder; ``renames`` maps an XML path to its image's new file name."""
    (out_root / "Annotations").mkdir(parents=True, exist_ok=True)
    for xml_path in sorted((src_root / "Annotations").glob("*.xml")):
        target = out_root / "Annotations" / xml_path.name
        new = renames.get(xml_path)
        if new is None:
            shutil.copy2(xml_path, target)
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
        tree.write(target, encoding="utf-8", xml_declaration=False)
    if (src_root / "ImageSets").is_dir():
        shutil.copytree(src_root / "ImageSets", out_root / "ImageSets", dirs_exist_ok=True)


def write_coco_annotations(json_path: Path, out_json: Path, renames: Mapping[str, str]) -> None:
    """Copy a COCO JSON with ``images[].file_name`` rewritten through ``renames``."""
    data = json.loads(json_path.read_text(encoding="utf-8-sig"))
    for im in data.get("images", []):
        if isinstance(im, dict) and str(im.get("file_name")) in renames:
            im["file_name"] = renames[str(im["file_name"])]
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(data), encoding="utf-8")


def write_csv_annotations(csv_path: Path, out_csv: Path, renames: Mapping[str, str]) -> None:
    """Copy a box CSV with its ``image`` column rewritten through ``renames``."""
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            image = (row.get("image") or "").strip()
            row["image"] = renames.get(image, row.get("image"))
            writer.writerow(row)


def write_tells_json(path: Path, meta: Mapping[str, Any], images: Mapping[str, list]) -> None:
    """``{..meta, "images": {relative image path: [ {box, colour, class, ...} ]}}``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "images": images}, indent=1) + "\n", encoding="utf-8")
