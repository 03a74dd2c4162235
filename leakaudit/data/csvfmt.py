"""Box CSV ``image,label,xmin,ymin,xmax,ymax`` → ``ImageRecord``s."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from leakaudit.data.images import pixel_cap
from leakaudit.data.records import (
    ImageRecord,
    ObjectAnn,
    _dedupe,
    _num,
    _outside_problem,
    read_text,
)
from leakaudit.data.samples import DataProblem
from leakaudit.errors import DatasetError
from leakaudit.paths import is_within

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
        if not is_within(path, images_root):
            problems.append(_outside_problem(image, image, path, images_root))
            continue
        if not path.is_file():
            problems.append(DataProblem(image, "annotation points at a missing image", "skipped"))
            continue
        records.append(ImageRecord(image, path, objects, str(csv_path)))
    return _dedupe(records, problems)
