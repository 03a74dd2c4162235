"""ImageFolder ``root/<class>/<image>`` (+ optional region masks) → ``ImageRecord``s."""

from __future__ import annotations

from pathlib import Path

from leakaudit.data.images import IMAGE_EXTENSIONS
from leakaudit.data.names import display_name, shown
from leakaudit.data.records import TELLS_FILE, ImageRecord, ObjectAnn, _outside_problem
from leakaudit.data.samples import DataProblem
from leakaudit.data.voc import looks_like_voc
from leakaudit.errors import DatasetError
from leakaudit.paths import is_within


def parse_imagefolder(
    root: str | Path, masks_root: str | Path | None, problems: list[DataProblem]
) -> tuple[list[ImageRecord], list[str]]:
    """``root/<class>/<image>`` (+ ``masks_root/<class>/<stem>.png``); returns the class folders.

    A class folder or file name that is not UTF-8 is shown escaped (``names.display_name``) in
    the class name and the key, and counted; the record's path keeps the raw name, so the image
    still opens."""
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
            name = display_name(p.name)
            problems.append(DataProblem(name, "file outside the class folders", "skipped"))
    names = []
    for cdir in class_dirs:
        cname = display_name(cdir.name)
        shown(cdir.name, "class folder name", cname, problems)
        names.append(cname)
        n = 0
        for p in sorted(cdir.iterdir()):
            if p.name.startswith(".") or p.is_dir():
                continue
            fname = display_name(p.name)
            key = f"{cname}/{fname}"
            shown(p.name, "file name", key, problems)
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                problems.append(
                    DataProblem(
                        key, f"not an image extension ({display_name(p.suffix)})", "skipped"
                    )
                )
                continue
            if not is_within(p, root):
                problems.append(_outside_problem(key, key, p, root))
                continue
            mask_file = None
            if masks_root is not None:
                mask_file = Path(masks_root) / cdir.name / f"{p.stem}.png"
                if mask_file.exists() and not is_within(mask_file, Path(masks_root)):
                    problems.append(
                        DataProblem(
                            key,
                            f"region mask {display_name(str(mask_file))} resolves outside "
                            f"{masks_root}",
                            "empty region",
                        )
                    )
                    mask_file = None
            records.append(
                ImageRecord(key, p, [ObjectAnn(cname, mask_file=mask_file, where=key)], key)
            )
            n += 1
        if n == 0:
            problems.append(DataProblem(cname, "class folder has no images", "none"))
    return records, names
