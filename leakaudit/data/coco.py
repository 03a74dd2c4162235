"""COCO instances JSON → ``ImageRecord``s: boxes, polygons and RLE masks (list or compressed
string counts), every field type-checked so a malformed file is one line, not a traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leakaudit.data.images import over_cap, pixel_cap
from leakaudit.data.names import shown
from leakaudit.data.records import (
    ImageRecord,
    ObjectAnn,
    _declared_size,
    _dedupe,
    _num,
    _outside_problem,
    _short,
    _whole,
    load_json,
)
from leakaudit.data.samples import DataProblem
from leakaudit.errors import DatasetError
from leakaudit.paths import is_within


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


def _coco_id(value: object, what: str) -> int | str:
    """COCO ids are integers (some tools write strings); lists, dicts, bools are errors."""
    whole = _whole(value)
    if whole is not None:
        return whole
    if isinstance(value, str):
        return value
    raise DatasetError(f"{what} must be an integer or a string, got {_short(value)}")


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the OS cannot encode (JSON ``"\\ud800"``)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


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
        name = shown(str(c["name"]).strip(), "category name", f"categories[{i}]", problems)
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
    for raw_name, objects, declared in images.values():
        path = images_root / raw_name  # the raw name opens the file; the shown one is the key
        file_name = shown(raw_name, "file_name", raw_name, [])
        if not is_within(path, images_root):
            problems.append(_outside_problem(file_name, file_name, path, images_root))
            continue
        if not _is_file(path):
            problems.append(
                DataProblem(file_name, "annotation points at a missing image", "skipped")
            )
            continue
        shown(raw_name, "file_name", file_name, problems)
        too_big = over_cap(*declared, cap) if declared else None
        if too_big:
            problems.append(DataProblem(file_name, f"width × height {too_big}", "skipped"))
            continue
        records.append(ImageRecord(file_name, path, objects, str(json_path), size=declared))
    return _dedupe(records, problems)
