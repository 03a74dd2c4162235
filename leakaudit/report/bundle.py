"""The saved results a report is rendered from: ``summary.json`` plus ``results.npz``.

``write_report`` saves both and then renders from what it saved, read back from disk, exactly as
``leakaudit report RESULT_DIR`` does later: one code path, so a re-render is byte-identical to
the original report without the model or the data. ``results.npz`` holds plain arrays only (no
pickles): per-sample scores, the compact attribution maps, small thumbnails of the images the
galleries show with their masks and maps, and a JSON string with what the summary lacks (model
order, notes, command line, reproducibility facts, gallery choices), and a ``manifest``
(JSON: every other entry's shape and dtype). Reading treats the file as untrusted: sizes are
checked from the headers before anything is inflated, the entries must match the manifest, and
the arrays must agree with each other (``saved.py``) before a renderer sees them.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from leakaudit.data.spill import SpilledStack
from leakaudit.jsonable import jsonable
from leakaudit.paths import atomic_path
from leakaudit.report import saved
from leakaudit.report.report_data import ReportData
from leakaudit.report.saved import ReportError  # raised by the checks; imported from here too

BUNDLE_NAME = "results.npz"
FORMAT_VERSION = 1
THUMB_SIDE = 64  # gallery thumbnails are at most 64×64: small PNGs, bounded report size


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str | None:
    """Hex digest of a file (None when it does not exist), for the reproducibility footer."""
    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with p.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """HWC float [0, 1] → uint8 of at most ``side`` pixels per side (box-filtered)."""
    pic = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    h, w = pic.shape[:2]
    if max(h, w) <= side:
        return pic
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(pic).resize(size, Image.Resampling.BOX))


def resize_mask(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if mask is None:
        return np.zeros(shape, bool)
    if mask.shape == shape:
        return mask.astype(bool)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.NEAREST)) > 127


def resize_map(attr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An attribution map resampled to ``shape`` (bilinear), as float16 like the compact maps."""
    a = np.asarray(attr, dtype=np.float32)
    if not np.isfinite(a).all():  # not explained (budgeted sample): no map, not a blank one
        return np.full(shape, np.nan, np.float16)
    if a.shape != shape:
        a = np.asarray(Image.fromarray(a, mode="F").resize((shape[1], shape[0]), Image.BILINEAR))
    return a.astype(np.float16)


def _text(value: str) -> np.ndarray:
    return np.array(value, dtype=str)


IMAGE_COLUMNS = ("pred", "confidence", "p_true")


def save_bundle(data: ReportData, path: str | Path | BinaryIO) -> None:
    """Write ``data`` as a compressed npz of plain arrays (no pickles)."""
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION),
        "meta": _text(json.dumps(jsonable(data.meta), sort_keys=True, allow_nan=False)),
        "ids": data.ids,
        "labels": data.labels,
        "thumbs": data.thumbs,
        "thumb_regions": data.thumb_regions,
        "thumb_tells": data.thumb_tells,
    }
    for i, model in enumerate(data.model_names):
        for col, v in data.images.get(model, {}).items():
            arrays[f"m{i}_{col}"] = v
        if model in data.class_pictures:
            arrays[f"m{i}_classpics"] = np.asarray(data.class_pictures[model], np.uint8)
        for j, method in enumerate(data.methods):
            for col, v in data.scores.get(model, {}).get(method, {}).items():
                arrays[f"m{i}_x{j}_{col}"] = v
            if method in data.maps.get(model, {}):
                arrays[f"m{i}_x{j}_maps"] = data.maps[model][method]
            if method in data.panel_maps.get(model, {}):
                arrays[f"m{i}_x{j}_panel"] = data.panel_maps[model][method]
    arrays["manifest"] = _text(json.dumps(manifest_of(arrays), sort_keys=True))
    _write_npz(Path(path) if isinstance(path, str) else path, arrays)


def manifest_of(arrays: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Entry → shape and dtype, saved beside the arrays: ``load_bundle`` refuses a file whose
    entries were removed, added or reshaped after it was written."""
    out = {}
    for key, value in arrays.items():
        a = value if isinstance(value, SpilledStack) else np.asanyarray(value)
        out[key] = {"shape": [int(d) for d in a.shape], "dtype": np.dtype(a.dtype).str}
    return out


ZIP_LEVEL = 1  # deflate level of the saved results (see _write_npz)


def _write_npz(path: Path | BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """An .npz (zip of .npy files) that ``np.load`` reads, written with fast compression
    (level 1: maps of 10 000 images would take minutes at numpy's default level) and fixed
    entry dates, so the same results give the same file. A path is written all or nothing
    (``paths.atomic_path``: a temporary beside it, then replaced; a link there is refused)."""
    if isinstance(path, Path):
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            _write_npz(f, arrays)
        return
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            if isinstance(value, SpilledStack):
                _stream_npy(zf, info, value)
                continue
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=ZIP_LEVEL)  # fmt: skip


def _stream_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, stack: SpilledStack) -> None:
    """A spilled stack as one .npy entry, a chunk of rows at a time (never all in memory); the
    same bytes ``np.save`` would write for the whole array."""
    info.compress_type = zipfile.ZIP_DEFLATED
    if hasattr(info, "compress_level"):  # Python ≥ 3.13
        info.compress_level = ZIP_LEVEL
    else:
        info._compresslevel = ZIP_LEVEL  # type: ignore[attr-defined]
    header = np.lib.format.header_data_from_array_1_0(np.empty((0,), stack.dtype))
    header["shape"] = stack.shape
    with zf.open(info, "w", force_zip64=stack.nbytes > 2**31 - 2**20) as f:
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in stack.chunks():
            f.write(np.ascontiguousarray(chunk).tobytes())


def load_bundle(path: str | Path | BinaryIO) -> ReportData:
    """Read what ``save_bundle`` wrote, checked before use (see module docstring); anything
    missing, unreadable, too large or inconsistent is a ``ReportError`` naming file and entry."""
    if isinstance(path, str):
        path = Path(path)
    if isinstance(path, Path) and not path.is_file():
        raise ReportError(f"{path}: not found (results written by leakaudit audit/compare/demo)")
    file = str(path) if isinstance(path, Path) else BUNDLE_NAME
    cap = saved.max_results_bytes()
    try:
        with zipfile.ZipFile(path) as zf:
            found = saved.npz_headers(zf, file, cap)  # sizes first: nothing inflated yet
            version = _entry(zf, "format_version") if "format_version" in found else -1
            if version != FORMAT_VERSION:
                raise ReportError(
                    f"{file}: results format {version}, this leakaudit reads {FORMAT_VERSION}"
                )
            if "manifest" not in found:
                raise ReportError(
                    f"{file}: entry manifest: missing (written by a leakaudit without "
                    "manifests, or edited): re-run the audit to save it again"
                )
            saved.check_manifest(found, _json_entry(zf, "manifest", file), file)
            arrays = {k: _entry(zf, k) for k in found if k != "manifest"}
    except ReportError:
        raise
    except MemoryError as e:
        raise ReportError(
            f"{file}: out of memory reading saved results "
            f"({saved.CAP_ENV} lowers the size accepted)"
        ) from e
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ReportError(f"{file}: cannot read saved results ({e})") from e
    data = _assemble(arrays, file)
    saved.check_bundle(data, file)
    return data


def _entry(zf: zipfile.ZipFile, key: str) -> Any:
    with zf.open(f"{key}.npy") as f:
        a = np.lib.format.read_array(f, allow_pickle=False)
    return a.item() if a.ndim == 0 and a.dtype.kind in "iu" else a


def _json_entry(zf: zipfile.ZipFile, key: str, file: str) -> Any:
    a = _entry(zf, key)
    if not (isinstance(a, np.ndarray) and a.ndim == 0 and a.dtype.kind == "U"):
        raise ReportError(f"{file}: entry {key}: expected a JSON string")
    try:
        return json.loads(str(a))
    except json.JSONDecodeError as e:
        raise ReportError(f"{file}: entry {key}: not valid JSON ({e})") from e


def _assemble(arrays: dict[str, Any], file: str) -> ReportData:
    """The arrays as a ``ReportData``; an entry the meta implies but the file lacks is named."""

    def need(key: str) -> np.ndarray:
        if key not in arrays:
            raise ReportError(f"{file}: entry {key}: missing (saved results are incomplete)")
        return arrays[key]

    meta_text = need("meta")
    try:
        meta = json.loads(str(meta_text))
    except json.JSONDecodeError as e:
        raise ReportError(f"{file}: entry meta: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ReportError(f"{file}: entry meta: expected a JSON object")
    for key in ("model_names", "methods"):
        names = meta.get(key, [])
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise ReportError(f"{file}: meta.{key}: expected a list of names")
    data = ReportData(
        meta=meta,
        ids=need("ids"),
        labels=need("labels"),
        thumbs=need("thumbs"),
        thumb_regions=need("thumb_regions"),
        thumb_tells=need("thumb_tells"),
    )
    for i, model in enumerate(data.model_names):
        data.images[model] = {c: need(f"m{i}_{c}") for c in IMAGE_COLUMNS}
        if f"m{i}_classpics" in arrays:
            data.class_pictures[model] = arrays[f"m{i}_classpics"]
        data.scores[model], data.maps[model], data.panel_maps[model] = {}, {}, {}
        for j, method in enumerate(data.methods):
            prefix = f"m{i}_x{j}_"  # every saved score column, whatever metrics were audited
            cols = {
                k[len(prefix) :]: arrays[k]
                for k in arrays
                if k.startswith(prefix) and k[len(prefix) :] not in ("maps", "panel")
            }
            if cols:
                data.scores[model][method] = cols
            if f"m{i}_x{j}_maps" in arrays:
                data.maps[model][method] = arrays[f"m{i}_x{j}_maps"]
            if f"m{i}_x{j}_panel" in arrays:
                data.panel_maps[model][method] = arrays[f"m{i}_x{j}_panel"]
    return data
