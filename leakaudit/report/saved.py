"""Checks of saved results (``summary.json``, ``results.npz``) before anything renders them.

A result folder is untrusted input: it may be hand-edited, truncated or crafted. Every field a
renderer reads is checked here first, so a bad file is one ``ReportError`` naming the file and
the field (``summary.json: models.x.conditions[2].value: expected a number, got "x"``), never an
IndexError deep in a template; and ``results.npz`` is sized from its headers before a byte is
inflated, so a small file cannot expand to gigabytes (``LEAKAUDIT_MAX_RESULTS_MB``).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from leakaudit.errors import LeakauditError

if TYPE_CHECKING:
    from leakaudit.report.report_data import ReportData

CAP_ENV = "LEAKAUDIT_MAX_RESULTS_MB"
DEFAULT_CAP_MB = 2048  # ≈ 250 000 compact 64×64 maps; all of it is read into memory
MAX_ENTRIES = 20_000
VERDICTS = ("clean", "leak", "inconclusive")
STATUSES = ("PASS", "WARN", "FAIL", "N/A")
GALLERY_KINDS = ("worst", "misclassified", "typical")


class ReportError(LeakauditError):
    """Saved results cannot be read back (missing, corrupt, or from an unknown format)."""


def _show(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bad(file: str, where: str, expected: str, got: Any) -> ReportError:
    return ReportError(f"{file}: {where}: expected {expected}, got {_show(got)}")


# ---------------------------------------------------------------- summary.json


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Summary:
    """Typed look-ups into the summary that raise with the field's dotted path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def need(self, ok: bool, where: str, expected: str, got: Any) -> None:
        if not ok:
            raise _bad(self.file, where, expected, got)

    def typed(self, d: dict, key: str, where: str, kind: str, optional: bool = True) -> Any:
        checks: dict[str, tuple[Callable[[Any], bool], str]] = {
            "num": (_is_num, "a number"),
            "int": (_is_int, "an integer"),
            "str": (lambda v: isinstance(v, str), "a string"),
            "bool": (lambda v: isinstance(v, bool), "true or false"),
            "dict": (lambda v: isinstance(v, dict), "an object"),
            "list": (lambda v: isinstance(v, list), "a list"),
        }
        ok, expected = checks[kind]
        if key not in d:
            self.need(optional, f"{where}.{key}" if where else key, expected, None)
            return None
        v = d[key]
        path = f"{where}.{key}" if where else key
        if v is None and optional and kind in ("num", "int", "str", "dict"):
            return None
        self.need(ok(v), path, expected + (" or null" if optional else ""), v)
        return v

    def nums(self, d: dict, where: str, keys: list[str]) -> None:
        for k in keys:
            self.typed(d, k, where, "num")


def check_summary(s: Any, file: str = "summary.json") -> None:
    """Types and ranges of every summary field the renderers read (a ``ReportError`` names
    the first bad one)."""
    from leakaudit.evidence import metrics
    from leakaudit.report.summary import SUMMARY_SCHEMA_VERSION

    c = _Summary(file)
    c.need(isinstance(s, dict), "(top level)", "an object", s)
    version = s.get("schema_version")
    c.need(version == SUMMARY_SCHEMA_VERSION, "schema_version",
           f"{SUMMARY_SCHEMA_VERSION} (re-run the audit with this leakaudit)", version)  # fmt: skip
    for key in ("title", "leakaudit_version"):
        c.typed(s, key, "", "str")
    c.typed(s, "seed", "", "int")
    n_eval = c.typed(s, "n_eval", "", "int")
    c.need(n_eval is None or n_eval >= 0, "n_eval", "a count ≥ 0", n_eval)
    c.nums(s, "", ["tell_area_fraction", "outside_area_fraction"])
    classes = c.typed(s, "class_names", "", "list", optional=False)
    for i, name in enumerate(classes):
        c.need(isinstance(name, str), f"class_names[{i}]", "a string", name)
    models = c.typed(s, "models", "", "dict", optional=False)
    c.need(bool(models), "models", "at least one model", models)
    scores = [m.key for m in metrics.audited()]
    for name, m in models.items():
        _check_model(c, f"models.{name}", m, set(classes), scores)
    for k, pair in (c.typed(s, "thresholds", "", "dict") or {}).items():
        ok = (
            isinstance(pair, list) and len(pair) == 2 and all(v is None or _is_num(v) for v in pair)
        )
        c.need(ok, f"thresholds.{k}", "[warn, fail] numbers or null", pair)
    for i, p in enumerate(c.typed(s, "data_problems", "", "list") or []):
        c.need(isinstance(p, dict), f"data_problems[{i}]", "an object", p)
        for key in ("item", "problem", "action"):
            c.typed(p, key, f"data_problems[{i}]", "str")
    for i, row in enumerate(c.typed(s, "comparison", "", "list") or []):
        where = f"comparison[{i}]"
        c.need(isinstance(row, dict), where, "an object", row)
        for key in ("method", "score", "test"):
            c.typed(row, key, where, "str")
        c.typed(row, "n", where, "int")
        c.nums(row, where, ["mean_diff", "lo", "hi", "cohens_dz", "p_value"])
    c.typed(s, "config", "", "dict")


def _check_model(c: _Summary, where: str, m: Any, classes: set[str], scores: list[str]) -> None:
    c.need(isinstance(m, dict), where, "an object", m)
    c.need(m.get("verdict") in VERDICTS, f"{where}.verdict", " / ".join(VERDICTS), m.get("verdict"))
    c.nums(m, where, ["accuracy", "eval_accuracy"])
    methods = c.typed(m, "methods", where, "dict", optional=False)
    for method, v in methods.items():
        w = f"{where}.methods.{method}"
        c.need(isinstance(v, dict), w, "an object", v)
        c.nums(v, w, scores)
        for key in ("n", "n_with_region", "n_with_tell"):
            c.typed(v, key, w, "int")
        c.typed(v, "params", w, "dict")
        for cls, row in (c.typed(v, "per_class", w, "dict") or {}).items():
            c.need(isinstance(row, dict), f"{w}.per_class.{cls}", "an object", row)
            c.nums(row, f"{w}.per_class.{cls}", scores)
            c.typed(row, "n", f"{w}.per_class.{cls}", "int")
    behaviour = c.typed(m, "behaviour", where, "dict") or {}
    removal = c.typed(behaviour, "removal", f"{where}.behaviour", "dict") or {}
    w = f"{where}.behaviour.removal"
    c.typed(removal, "n", w, "int")
    c.nums(removal, w, ["accuracy_with_tell", "accuracy_tell_removed", "accuracy_drop",
                        "flip_rate", "worst_class_drop_lower"])  # fmt: skip
    worst = c.typed(removal, "worst_class", w, "str")
    c.need(worst is None or worst in classes, f"{w}.worst_class", "a class name", worst)
    for cls, row in (c.typed(removal, "per_class", w, "dict") or {}).items():
        c.need(isinstance(row, dict), f"{w}.per_class.{cls}", "an object", row)
        c.nums(row, f"{w}.per_class.{cls}", ["accuracy_with_tell", "accuracy_tell_removed",
                                            "accuracy_drop", "drop_lower"])  # fmt: skip
    swap = c.typed(behaviour, "swap", f"{where}.behaviour", "dict") or {}
    c.typed(swap, "n_pairs", f"{where}.behaviour.swap", "int")
    c.nums(swap, f"{where}.behaviour.swap", ["follow_rate", "kept_true_class_rate"])
    for i, x in enumerate(c.typed(m, "suspected_tells", where, "list", optional=False)):
        _check_suspect(c, f"{where}.suspected_tells[{i}]", x, classes)
    ablation = c.typed(m, "region_ablation", where, "dict") or {}
    c.nums(ablation, f"{where}.region_ablation",
           ["accuracy_with", "accuracy_without", "chance", "retained"])  # fmt: skip
    for method, r in (c.typed(m, "sanity", where, "dict") or {}).items():
        w = f"{where}.sanity.{method}"
        c.need(isinstance(r, dict), w, "an object", r)
        c.typed(r, "passed", w, "bool")
        c.typed(r, "reason", w, "str")
        c.nums(r, w, ["final_spearman"])
        for j, st in enumerate(c.typed(r, "layers", w, "list") or []):
            c.need(isinstance(st, dict), f"{w}.layers[{j}]", "an object", st)
            c.typed(st, "layer", f"{w}.layers[{j}]", "str")
            c.nums(st, f"{w}.layers[{j}]", ["spearman", "ssim"])
    for i, cond in enumerate(c.typed(m, "conditions", where, "list", optional=False)):
        w = f"{where}.conditions[{i}]"
        c.need(isinstance(cond, dict), w, "an object", cond)
        for key in ("name", "kind", "evidence"):
            c.typed(cond, key, w, "str", optional=False)
        c.nums(cond, w, ["value", "warn", "fail"])
        status = cond.get("status")
        c.need(status in STATUSES, f"{w}.status", " / ".join(STATUSES), status)


def _check_suspect(c: _Summary, where: str, x: Any, classes: set[str]) -> None:
    c.need(isinstance(x, dict), where, "an object", x)
    box = x.get("box")
    c.need(isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box),
           f"{where}.box", "4 numbers [x0, y0, x1, y1]", box)  # fmt: skip
    colour = x.get("colour")
    ok = colour is None or (isinstance(colour, list) and len(colour) == 3
                            and all(_is_num(v) and math.isfinite(v) for v in colour))  # fmt: skip
    c.need(ok, f"{where}.colour", "3 numbers", colour)
    for i, cls in enumerate(c.typed(x, "classes", where, "list", optional=False)):
        c.need(isinstance(cls, str) and cls in classes, f"{where}.classes[{i}]",
               "a name from class_names", cls)  # fmt: skip
    for key in ("strong", "may_fail", "judged"):
        c.typed(x, key, where, "bool")
    c.typed(x, "source", where, "str")
    c.nums(x, where, ["share", "score", "iou_with_known_tell"])
    for key in ("removal", "swap"):
        c.nums(c.typed(x, key, where, "dict") or {}, f"{where}.{key}",
               ["accuracy_drop", "follow_rate", "control_follow_rate"])  # fmt: skip


# ---------------------------------------------------------------- results.npz


def max_results_bytes() -> int:
    """The most bytes ``results.npz`` may inflate to: ``LEAKAUDIT_MAX_RESULTS_MB`` (MB) or
    ``DEFAULT_CAP_MB``."""
    raw = os.environ.get(CAP_ENV, "").strip()
    if not raw:
        return DEFAULT_CAP_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        raise ReportError(f"{CAP_ENV}={raw!r}: expected a number of megabytes") from None
    if not math.isfinite(mb) or mb <= 0:
        raise ReportError(f"{CAP_ENV}={raw!r}: expected a positive number of megabytes")
    return int(mb * 2**20)


def _raise_hint(cap: int) -> str:
    return f"the cap is {cap / 2**20:g} MB; raise it with {CAP_ENV}=<MB> if the file is yours"


def npz_headers(zf: zipfile.ZipFile, file: str, cap: int) -> dict[str, tuple[tuple, str]]:
    """Entry name → (shape, dtype) from each .npy header, without inflating the data: the
    zip's declared sizes and each header's shape × dtype must agree and stay under ``cap``."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise ReportError(f"{file}: {len(infos)} entries (at most {MAX_ENTRIES})")
    for info in infos:
        if info.file_size > cap:
            raise ReportError(
                f"{file}: entry {info.filename}: {info.file_size} bytes uncompressed "
                f"({info.compress_size} stored); {_raise_hint(cap)}"
            )
    total = sum(i.file_size for i in infos)
    if total > cap:
        raise ReportError(f"{file}: entries declare {total} bytes uncompressed in all; "
                          f"{_raise_hint(cap)}")  # fmt: skip
    out: dict[str, tuple[tuple, str]] = {}
    for info in infos:
        name = info.filename
        if not name.endswith(".npy") or name[:-4] in out:
            raise ReportError(
                f"{file}: entry {name!r}: not one .npy array (saved results hold only those)"
            )
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ReportError(f"{file}: entry {name}: .npy version {version} not read")
            offset = f.tell()
        if dtype.hasobject:
            raise ReportError(f"{file}: entry {name}: objects (pickles) are never read")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > cap:
            raise ReportError(f"{file}: entry {name}: shape {shape} × {dtype.str} is {nbytes} "
                              f"bytes; {_raise_hint(cap)}")  # fmt: skip
        if offset + nbytes != info.file_size:
            raise ReportError(f"{file}: entry {name}: header says {offset + nbytes} bytes, the "
                              f"zip says {info.file_size}")  # fmt: skip
        out[name[:-4]] = (tuple(int(d) for d in shape), dtype.str)
    return out


def check_manifest(found: dict[str, tuple[tuple, str]], manifest: Any, file: str) -> None:
    """The entries must be exactly the ones ``save_bundle`` listed, with their shapes and
    dtypes: a dropped maps array or a grown one is refused, not rendered."""
    if not isinstance(manifest, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("shape"), list) and isinstance(v.get("dtype"), str)
        for v in manifest.values()
    ):
        raise ReportError(f"{file}: entry manifest: expected {{name: {{shape, dtype}}}}")
    listed = {k: (tuple(v["shape"]), v["dtype"]) for k, v in manifest.items()}
    here = {k: v for k, v in found.items() if k != "manifest"}
    for name in sorted(set(listed) - set(here)):
        raise ReportError(f"{file}: entry {name}: listed in the manifest but missing")
    for name in sorted(set(here) - set(listed)):
        raise ReportError(f"{file}: entry {name}: not in the manifest (added after saving?)")
    for name in sorted(here):
        if here[name] != listed[name]:
            raise ReportError(f"{file}: entry {name}: shape/dtype {here[name]} but the manifest "
                              f"says {listed[name]}")  # fmt: skip


def _shape(file: str, name: str, a: Any, want: tuple, kinds: str) -> None:
    """``a`` has shape ``want`` (None: any size) and a dtype kind in ``kinds``."""
    ok = a.ndim == len(want) and all(
        w is None or w == d for w, d in zip(want, a.shape, strict=False)
    )
    if not ok or a.dtype.kind not in kinds:
        dims = "×".join("?" if w is None else str(w) for w in want) or "scalar"
        raise ReportError(f"{file}: entry {name}: expected shape {dims} of kind {kinds!r}, got "
                          f"{'×'.join(map(str, a.shape)) or 'scalar'} {a.dtype.str}")  # fmt: skip


def check_bundle(data: ReportData, file: str) -> None:
    """Shapes that must agree before any renderer indexes: N images (ids, labels, every
    per-model array), N×h×w maps, T thumbnails with their masks and panel maps, and the
    meta's lists (models, methods, thumb_index and gallery indices within N)."""
    meta, n = data.meta, len(data.labels)
    c = _Summary(f"{file}: meta")
    c.need(isinstance(meta, dict), "(top level)", "an object", meta)
    for key in ("model_names", "methods", "notes", "thumb_index", "galleries"):
        c.typed(meta, key, "", "list")
    for key in ("model_names", "methods", "notes"):
        for i, v in enumerate(meta.get(key) or []):
            c.need(isinstance(v, str), f"{key}[{i}]", "a string", v)
    c.typed(meta, "command", "", "str")
    for key in ("insight_pages", "reproducibility"):
        c.typed(meta, key, "", "dict")
    _shape(file, "labels", data.labels, (None,), "iu")
    _shape(file, "ids", data.ids, (n,), "U")
    if n and data.labels.min() < 0:
        raise ReportError(f"{file}: entry labels: negative class index {data.labels.min()}")
    t = len(data.thumbs)
    _shape(file, "thumbs", data.thumbs, (t, None, None, 3), "u")
    h, w = data.thumbs.shape[1:3]
    _shape(file, "thumb_regions", data.thumb_regions, (t, h, w), "b")
    _shape(file, "thumb_tells", data.thumb_tells, (t, h, w), "b")
    index = meta.get("thumb_index") or []
    c.need(len(index) == t and all(_is_int(i) and 0 <= i < n for i in index)
           and len(set(index)) == t, "thumb_index", f"{t} distinct image indices < {n}",
           index)  # fmt: skip
    for g, gal in enumerate(meta.get("galleries") or []):
        where = f"galleries[{g}]"
        c.need(isinstance(gal, dict), where, "an object", gal)
        c.need(gal.get("kind") in GALLERY_KINDS, f"{where}.kind", " / ".join(GALLERY_KINDS),
               gal.get("kind"))  # fmt: skip
        c.need(gal.get("model") is None or gal.get("model") in data.model_names,
               f"{where}.model", "a saved model name or null", gal.get("model"))  # fmt: skip
        c.typed(gal, "score", where, "str")
        for k, item in enumerate(c.typed(gal, "items", where, "list", optional=False)):
            ok = isinstance(item, dict) and _is_int(item.get("index"))
            c.need(ok and 0 <= item["index"] < n, f"{where}.items[{k}].index",
                   f"an image index < {n}", item.get("index") if ok else item)  # fmt: skip
            c.nums(item, f"{where}.items[{k}]", ["value"])
    for model in data.model_names:
        for col, a in data.images.get(model, {}).items():
            _shape(file, f"{model}.{col}", a, (n,), "iu" if col == "pred" else "f")
        pics = data.class_pictures.get(model)
        if pics is not None:
            _shape(file, f"{model}.classpics", pics, (None, None, None, 3), "u")
        for method, cols in data.scores.get(model, {}).items():
            for col, a in cols.items():
                _shape(file, f"{model}.{method}.{col}", a, (n,), "fiub")
        for method, maps in data.maps.get(model, {}).items():
            _shape(file, f"{model}.{method}.maps", np.asarray(maps[:0]), (0, None, None), "f")
            if len(maps) != n:
                raise ReportError(f"{file}: entry {model}.{method}.maps: {len(maps)} maps for "
                                  f"{n} images")  # fmt: skip
        for method, panel in data.panel_maps.get(model, {}).items():
            _shape(file, f"{model}.{method}.panel", panel, (t, h, w), "f")


def check_pair(s: dict[str, Any], data: ReportData, file: str) -> None:
    """What the two files must agree on: class indices within ``class_names``, and the saved
    models among the summary's."""
    k = len(s["class_names"])
    if len(data.labels) and data.labels.max() >= k:
        raise ReportError(f"{file}: entry labels: class index {data.labels.max()} but "
                          f"summary.json has {k} classes")  # fmt: skip
    for model in data.model_names:
        pred = data.images.get(model, {}).get("pred")
        if pred is not None and len(pred) and (pred.min() < -1 or pred.max() >= k):
            raise ReportError(f"{file}: entry {model}.pred: class index outside -1..{k - 1}")
        if model not in s["models"]:
            raise ReportError(f"{file}: meta.model_names: {_show(model)} is not in summary.json")
