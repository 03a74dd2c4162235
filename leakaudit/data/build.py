"""Parsed records → samples: labels, object crops, region and tell masks, one size.

The rules (label rules, crop windows, clipping, tells) are written down once, in the
``leakaudit.data.formats`` module docstring.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from leakaudit.data.geometry import (
    DEFAULT_MARGIN,
    Box,
    IntBox,
    _fmt_box,
    box_mask,
    check_box,
    crop_array,
    crop_window,
    mask_bbox,
    polygon_mask,
)
from leakaudit.data.images import pixel_cap, read_image, resize_image, resize_mask
from leakaudit.data.names import classes_without_images, display_name, name_problems
from leakaudit.data.records import ImageRecord, ObjectAnn
from leakaudit.data.samples import DataProblem, Dataset, Sample
from leakaudit.data.spill import SpillStore, spill_limit_bytes
from leakaudit.errors import ConfigError, DatasetError

DEFAULT_CROP_SIZE = 64
MIN_CROP_BOX = 2.0  # px: crop mode skips smaller boxes (BCCD has 1×1 "boxes": nothing to see)
# px: an image with a shorter side is skipped and counted. 8 is the smallest input side the CLI
# accepts (--size): below it an image is a few pixels of colour stretched over the input, so
# its attributions (and any "tell" in it) say nothing; a 1×1 image is one colour.
MIN_IMAGE_SIDE = 8

LABEL_RULES = ("unique", "error", "majority", "largest")
MODES = ("image", "crop")
MAX_TELL_FRACTION = 0.25  # a tell box above this share of its image is refused (docstring)


class DataWarning(UserWarning):
    """Emitted for each skipped file so a user watching the console sees it at once."""


@dataclass
class _Unit:
    record: ImageRecord
    label: str
    objects: list[int]  # indices into record.objects: all of the label (image) or one (crop)


def _resolve_classes(
    records: list[ImageRecord],
    classes: Sequence[str] | None,
    skip_unknown: bool,
    problems: list[DataProblem],
    extra: Sequence[str] = (),
) -> list[str]:
    if classes is None:
        return sorted({o.label for r in records for o in r.objects} | set(extra))
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ConfigError(f"duplicate names in classes {classes}")
    dropped: Counter[str] = Counter()
    for r in records:
        kept = []
        for o in r.objects:
            if o.label in classes:
                kept.append(o)
            elif skip_unknown:
                dropped[o.label] += 1
            else:
                raise DatasetError(
                    f"class {o.label!r} ({o.where or r.source}) is not in the given classes "
                    f"{classes}; add it to --classes, or pass --skip-unknown to drop such objects"
                )
        r.objects = kept
    for name, n in sorted(dropped.items()):
        problems.append(DataProblem(name, f"{n} object(s) of a class not in classes", "skipped"))
    return classes


def _image_label(
    r: ImageRecord, rule: str, problems: list[DataProblem]
) -> tuple[str, list[int]] | None:
    if not r.objects:
        problems.append(DataProblem(r.key, "no annotated objects", "skipped"))
        return None
    names = Counter(o.label for o in r.objects)
    if len(names) == 1:
        label = next(iter(names))
    elif rule == "error":
        raise DatasetError(
            f"{r.source}: image {r.key} has objects of several classes {sorted(names)}; "
            "use mode='crop' or another label_rule"
        )
    elif rule == "unique":
        problems.append(
            DataProblem(r.key, f"objects of several classes {sorted(names)}", "skipped")
        )
        return None
    elif rule == "majority":
        (top, n1), *rest = names.most_common()
        if rest and rest[0][1] == n1:
            problems.append(DataProblem(r.key, f"no majority class in {dict(names)}", "skipped"))
            return None
        label = top
    else:  # largest
        area: dict[str, float] = defaultdict(float)
        for o in r.objects:
            b = o.bounds()
            if b is not None:
                area[o.label] += max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
        if not area:
            problems.append(DataProblem(r.key, "no object has a box to compare", "skipped"))
            return None
        label = max(sorted(area), key=lambda k: area[k])
    return label, [i for i, o in enumerate(r.objects) if o.label == label]


def _select(
    units: list[_Unit],
    class_names: list[str],
    max_per_class: int | None,
    seed: int,
    problems: list[DataProblem],
) -> list[_Unit]:
    if max_per_class is None:
        return units
    if max_per_class < 1:
        raise ConfigError(f"max_per_class must be ≥ 1, got {max_per_class}")
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(units), dtype=bool)
    labels = np.array([u.label for u in units], dtype=object)
    for name in class_names:
        idx = np.flatnonzero(labels == name)
        if len(idx) > max_per_class:
            idx = rng.choice(idx, size=max_per_class, replace=False)  # asked for: not a problem
        keep[idx] = True
    return [u for u, k in zip(units, keep, strict=True) if k]


def _object_mask(
    obj: ObjectAnn,
    h: int,
    w: int,
    key: str,
    problems: list[DataProblem],
    note_missing: bool,
    fail_action: str = "empty region",
    max_pixels: int | None = None,
) -> tuple[np.ndarray, Box | None]:
    """Full-image mask of one object and its clipped box (None when it has no usable extent)."""
    empty = np.zeros((h, w), dtype=bool)
    item = obj.where or key
    if obj.mask_file is not None:
        if not obj.mask_file.is_file():
            problems.append(DataProblem(item, f"no region mask {obj.mask_file}", "empty region"))
            return empty, None
        try:
            m = read_image(obj.mask_file, max_pixels)[0].max(axis=2) > 0
        except DatasetError as e:
            problems.append(DataProblem(item, str(e), "empty region"))
            return empty, None
        if m.shape != (h, w):
            problems.append(
                DataProblem(item, f"mask {m.shape[1]}×{m.shape[0]} ≠ image {w}×{h}", "resized")
            )
            m = resize_mask(m, h, w)
        return m, mask_bbox(m)
    b = obj.bounds()
    if b is None:
        if note_missing:
            problems.append(DataProblem(item, "object has no box or polygon", "empty region"))
        return empty, None
    cb, problem, action = check_box(b, h, w)
    if problem is not None:
        problems.append(DataProblem(item, problem, fail_action if cb is None else str(action)))
    if cb is None:
        return empty, None
    if obj.mask is not None:
        if obj.mask.shape != (h, w):
            problems.append(
                DataProblem(item, f"RLE size {obj.mask.shape} ≠ image {w}×{h}", fail_action)
            )
            return empty, None
        return obj.mask.copy(), cb
    if obj.polygons:
        return polygon_mask(obj.polygons, h, w), cb
    return box_mask(cb, h, w), cb


def _tell_masks(
    entries: list[dict], h: int, w: int, key: str, problems: list[DataProblem]
) -> list[tuple[dict, np.ndarray]]:
    """Masks of an image's tells; one covering more than ``MAX_TELL_FRACTION`` is dropped."""
    out = []
    for t in entries:
        box: Box = tuple(float(v) for v in t["box"])  # type: ignore[assignment]
        m = box_mask(box, h, w)
        share = float(m.mean())
        if share > MAX_TELL_FRACTION:
            problems.append(
                DataProblem(
                    key,
                    f"tell box {_fmt_box(box)} covers {share:.0%} of the {w}×{h} image "
                    f"(more than MAX_TELL_FRACTION={MAX_TELL_FRACTION:g} is not a tell)",
                    "tell dropped",
                )
            )
            continue
        if m.any():
            out.append((t, m))
    return out


def _finish_tell(
    tells: list[tuple[dict, np.ndarray]],
    transform: Callable[[np.ndarray], np.ndarray],
    own_object: int | None,
) -> tuple[np.ndarray | None, IntBox | None]:
    """Union of the tells visible after ``transform`` and the box of the most relevant one."""
    union, best = None, None
    for t, m in tells:
        tm = transform(m)
        if not tm.any():
            continue
        union = tm if union is None else union | tm
        own = own_object is not None and t.get("object") == own_object
        if best is None or own:
            best = mask_bbox(tm)
    return union, best


def build_dataset(
    records: list[ImageRecord],
    *,
    mode: str = "image",
    size: int | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    label_rule: str = "unique",
    margin: float = DEFAULT_MARGIN,
    window: float | None = None,
    pad: str = "edge",
    max_per_class: int | None = None,
    seed: int = 0,
    tells: dict[str, list[dict]] | None = None,
    problems: list[DataProblem] | None = None,
    source: str = "dataset",
    extra_classes: Sequence[str] = (),
    note_missing_geometry: bool = True,
    max_pixels: int | None = None,
) -> Dataset:
    """Turn parsed records into samples (see the module docstring for every rule)."""
    problems = [] if problems is None else problems
    pixel_cap(max_pixels)  # a bad option fails before any image is read
    tells = tells or {}
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; use one of {MODES}")
    if label_rule not in LABEL_RULES:
        raise ConfigError(f"unknown label_rule {label_rule!r}; use one of {LABEL_RULES}")
    if pad not in ("edge", "reflect", "symmetric", "constant", "wrap"):
        raise ConfigError(f"unknown pad mode {pad!r}")
    if margin < 0:
        raise ConfigError(f"margin must be ≥ 0, got {margin}")
    if window is not None and not window >= 1:
        raise ConfigError(f"window must be ≥ 1 pixel, got {window}")
    if size is not None and size < 1:
        raise ConfigError(f"size must be ≥ 1, got {size}")
    class_names = _resolve_classes(records, classes, skip_unknown, problems, extra_classes)
    problems.extend(name_problems(class_names))
    index = {c: k for k, c in enumerate(class_names)}

    units: list[_Unit] = []
    if mode == "image":
        for r in records:
            got = _image_label(r, label_rule, problems)
            if got is not None:
                units.append(_Unit(r, got[0], got[1]))
    else:
        size = DEFAULT_CROP_SIZE if size is None else size
        for r in records:
            for i, o in enumerate(r.objects):
                b = o.bounds()
                if b is None:
                    problems.append(DataProblem(o.where or r.key, "object has no box", "skipped"))
                elif not (b[2] > b[0] and b[3] > b[1]):
                    problems.append(
                        DataProblem(o.where or r.key, f"degenerate box {_fmt_box(b)}", "skipped")
                    )
                elif min(b[2] - b[0], b[3] - b[1]) < MIN_CROP_BOX:
                    problems.append(
                        DataProblem(
                            o.where or r.key,
                            f"box {_fmt_box(b)} smaller than {MIN_CROP_BOX:g} px",
                            "skipped",
                        )
                    )
                else:
                    units.append(_Unit(r, o.label, [i]))
    units = _select(units, class_names, max_per_class, seed, problems)

    by_record: dict[int, list[_Unit]] = defaultdict(list)
    order: list[ImageRecord] = []
    for u in units:
        if id(u.record) not in by_record:
            order.append(u.record)
        by_record[id(u.record)].append(u)

    samples: list[Sample] = []
    store: SpillStore | None = None  # decoded arrays on disk when they would not fit (spill.py)
    spill_above = spill_limit_bytes()  # read (and checked) once, before any image is decoded
    target: tuple[int, int] | None = (size, size) if size is not None else None
    for r in order:
        try:
            image, conversion = read_image(r.path, max_pixels)
        except DatasetError as e:
            warnings.warn(f"skipped: {e}", DataWarning, stacklevel=2)
            problems.append(DataProblem(r.key, str(e), "skipped"))
            continue
        h, w = image.shape[:2]
        if min(h, w) < MIN_IMAGE_SIDE:
            problems.append(
                DataProblem(r.key, f"image is {w}×{h}, smaller than {MIN_IMAGE_SIDE} px", "skipped")
            )
            continue
        if conversion:
            problems.append(DataProblem(r.key, conversion, "converted"))
        if r.size is not None and r.size != (w, h):
            hint = " (rotated: EXIF orientation?)" if r.size == (h, w) else ""
            problems.append(
                DataProblem(
                    r.key,
                    f"annotation says {r.size[0]}×{r.size[1]} but the image is {w}×{h}{hint}; "
                    "boxes would not match",
                    "skipped",
                )
            )
            continue
        tell_list = _tell_masks(tells.get(r.key, []), h, w, r.key, problems)
        for u in by_record[id(r)]:
            if mode == "image":
                region = np.zeros((h, w), dtype=bool)
                for i in u.objects:
                    m, _ = _object_mask(
                        r.objects[i],
                        h,
                        w,
                        r.key,
                        problems,
                        note_missing_geometry,
                        max_pixels=max_pixels,
                    )
                    region |= m
                if target is None:
                    target = (h, w)
                th, tw = target
                if (h, w) != target and size is None:
                    problems.append(
                        DataProblem(r.key, f"size {w}×{h} ≠ first image's {tw}×{th}", "resized")
                    )
                img = resize_image(image, th, tw)
                region = resize_mask(region, th, tw)
                tell, tell_box = _finish_tell(
                    tell_list, lambda m, th=th, tw=tw: resize_mask(m, th, tw), None
                )
                sid = r.key
            else:
                obj_i = u.objects[0]
                m, cb = _object_mask(
                    r.objects[obj_i], h, w, r.key, problems, True, "skipped", max_pixels
                )
                if cb is None:
                    continue  # problem already recorded (box outside the image, bad RLE)
                win = crop_window(cb, h, w, margin, window)
                assert size is not None

                def tf(mm: np.ndarray, win: IntBox = win) -> np.ndarray:
                    return resize_mask(crop_array(mm, win), size, size)

                img = resize_image(crop_array(image, win, pad), size, size)
                region = tf(m)
                tell, tell_box = _finish_tell(tell_list, tf, obj_i)
                sid = f"{r.key}#{obj_i}"
            if tell is not None:
                region = region & ~tell
            sample = Sample(img, index[u.label], region, sid, tell, tell_box)
            if store is None and len(units) * img.nbytes > spill_above:
                store = SpillStore()  # decided once, at the first sample: the set is too big
            samples.append(sample.spill(store) if store is not None else sample)

    problems[:] = [_printable(p) for p in problems]
    if not samples:
        summary = Counter(p.problem.split(" ")[0] + " … " + p.action for p in problems)
        hint = "; ".join(f"{n}× {k}" for k, n in summary.most_common(4)) or "no images found"
        raise DatasetError(f"no usable samples in {display_name(source)} (mode={mode}): {hint}")
    data = Dataset(samples, class_names, problems)
    few = classes_without_images(data)
    if few is not None:
        problems.append(few)
    return data


def _printable(p: DataProblem) -> DataProblem:
    """``p`` with any raw path text (lone surrogates) escaped, so every writer can take it."""
    fixed = DataProblem(display_name(p.item), display_name(p.problem), display_name(p.action))
    return p if fixed == p else fixed
