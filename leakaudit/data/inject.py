"""Poison a dataset on disk: the same format back, with planted tells and a ``tells.json``.

Decisions (why):

* **Every** image of the copy is re-written as lossless PNG, poisoned or not. JPEG would blur the
  solid tell (its mask would no longer be exact), and converting only the poisoned images would
  make the file container itself a class-correlated tell. Annotation files are copied with only
  their image references changed (``a.jpg`` → ``a.png``). Unreadable images are copied byte for
  byte so the reader reports them again.
* ``anchor="image"``: one tell per chosen image, placed by ``spec`` on the full image (``spec.size``
  in image pixels). An image's class is its folder (ImageFolder) or ``label_rule`` (detection).
* ``anchor="object"``: one tell per chosen object, placed by ``spec`` inside that object's crop
  window (the same window ``mode="crop"`` readers cut, for the same ``margin``/``window``), with
  ``spec.size``/``spec.margin`` given in pixels of the resized crop (``size``, default 64) and
  scaled to each object, so every crop of the class shows the same tell. Neighbouring crops
  may see a tell too; readers then mark it in their ``tell`` mask as well.
* ``prevalence`` is exact per class: ``round(prevalence · n)`` images/objects, chosen seeded.
* ``tells.json`` lists, per image (path relative to the images root), every tell box (pixel edges,
  end exclusive), colour, class and the number of pixels that actually changed at 8 bits.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.data.formats import (
    DATASET_FORMATS,
    DEFAULT_CROP_SIZE,
    DEFAULT_MARGIN,
    LABEL_RULES,
    MIN_CROP_BOX,
    TELLS_FILE,
    DatasetFormat,
    ImageRecord,
    _image_label,
    _resolve_classes,
    check_box,
    crop_window,
    format_names,
)
from leakaudit.data.images import read_image, to_uint8
from leakaudit.data.names import check_class_names
from leakaudit.data.samples import DataProblem
from leakaudit.data.tells import PALETTE, Box, TellSpec
from leakaudit.data.writers import png_name, save_png_atomic, write_tells_json
from leakaudit.errors import ConfigError, DatasetError
from leakaudit.paths import atomic_path, inside

ANCHORS = ("image", "object")


@dataclass
class InjectResult:
    """Where the poisoned copy is and how to read it back with ``read_dataset``."""

    out_dir: Path
    format: str
    read_path: Path  # first argument of read_dataset
    tells_path: Path
    class_names: list[str]
    n_images: int
    n_tells: int
    tells_per_class: dict[str, int]
    problems: list[DataProblem] = field(default_factory=list)


@dataclass
class _Unit:
    record: ImageRecord
    label: str
    obj: int | None  # object index for anchor="object"


def build_tell_spec(
    src: str | Path,
    format: str,
    colours: Mapping[str, tuple[float, float, float]] | None = None,
    images_root: str | Path | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    **spec_fields: Any,
) -> TellSpec:
    """A ``TellSpec`` whose colours are keyed by the class index ``inject_dataset`` will use.

    ``colours`` maps class *names* to RGB in [0, 1]; classes without one keep the default
    palette. An unknown class name is an error listing the known ones. Only annotations are
    parsed (no image is decoded) to learn the class names.
    """
    problems: list[DataProblem] = []
    records, folders = _parse(Path(src), format, Path(images_root) if images_root else None,
                              problems)  # fmt: skip
    names = _resolve_classes(records, classes, skip_unknown, problems, folders)
    full = None
    if colours:
        unknown = sorted(set(colours) - set(names))
        if unknown:
            raise ConfigError(f"--colour: unknown class(es) {unknown}; classes: {names}")
        full = {k: colours.get(n, PALETTE[k % len(PALETTE)]) for k, n in enumerate(names)}
    return TellSpec(colours=full, **spec_fields)


def _format(format: str) -> DatasetFormat:
    """The registered format ``inject`` can copy (``DatasetFormat.write_copy``)."""
    fmt = DATASET_FORMATS.get(format)
    known = [n for n, f in DATASET_FORMATS.items() if f.write_copy is not None]
    if fmt is None or fmt.write_copy is None:
        raise ConfigError(f"unknown dataset format {format!r}; use {', '.join(known)}")
    return fmt


def _parse(
    src: Path, format: str, images_root: Path | None, problems: list[DataProblem]
) -> tuple[list[ImageRecord], list[str]]:
    return _format(format).parse(src, images_root, problems)


def _object_tell_box(
    spec: TellSpec,
    cb: tuple[float, float, float, float],
    h: int,
    w: int,
    margin: float,
    crop_size: int,
    rng: np.random.Generator,
    window: float | None = None,
) -> Box:
    """``spec`` placed in crop coordinates, scaled back to the object's window in the image."""
    wx0, wy0, wx1, _ = crop_window(cb, h, w, margin, window)
    scale = (wx1 - wx0) / crop_size
    pos = spec.position
    if isinstance(pos, tuple):
        pos = (int(round(pos[0] * scale)), int(round(pos[1] * scale)))
    scaled = replace(
        spec,
        size=max(1, int(round(spec.size * scale))),
        margin=int(round(spec.margin * scale)),
        position=pos,
    )
    x0, y0, x1, y1 = scaled.box_for(wx1 - wx0, wx1 - wx0, rng)
    return (x0 + wx0, y0 + wy0, x1 + wx0, y1 + wy0)


def inject_dataset(
    src: str | Path,
    format: str,
    out_dir: str | Path,
    spec: TellSpec,
    seed: int,
    anchor: str = "image",
    poison_classes: Sequence[str] | None = None,
    images_root: str | Path | None = None,
    classes: Sequence[str] | None = None,
    skip_unknown: bool = False,
    label_rule: str = "unique",
    margin: float = DEFAULT_MARGIN,
    size: int | None = None,
    window: float | None = None,
    **reader_options: Any,
) -> InjectResult:
    """Write a poisoned copy of ``src`` to ``out_dir`` (must be empty or new); see module doc.

    ``poison_classes`` limits the tells to some classes (default: every class gets its colour).
    ``classes``/``skip_unknown``/``label_rule``/``margin``/``window``/``size`` mean what they mean
    for the readers; pass the same values when reading the copy back. Other reader options are
    ignored.
    """
    src, out = Path(src), Path(out_dir)
    if anchor not in ANCHORS:
        raise ConfigError(f"unknown anchor {anchor!r}; use one of {ANCHORS}")
    if label_rule not in LABEL_RULES:
        raise ConfigError(f"unknown label_rule {label_rule!r}; use one of {LABEL_RULES}")
    fmt = _format(format)
    if anchor == "object" and not fmt.boxes:
        raise ConfigError(f"anchor='object' needs boxes: use {', '.join(format_names(boxes=True))}")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} is not empty")
    if out.resolve() == (src if src.is_dir() else src.parent).resolve():
        raise ConfigError("output folder must differ from the source")
    if not 0.0 <= spec.prevalence <= 1.0:
        raise ConfigError(f"prevalence must be in [0, 1], got {spec.prevalence}")
    crop_size = size or DEFAULT_CROP_SIZE
    if anchor == "object":
        spec.validate(crop_size, crop_size)

    problems: list[DataProblem] = []
    records, folders = _parse(src, format, Path(images_root) if images_root else None, problems)
    class_names = _resolve_classes(records, classes, skip_unknown, problems, folders)
    check_class_names(class_names, "inject")  # written back as folders, they would split
    index = {c: k for k, c in enumerate(class_names)}
    targets = set(class_names if poison_classes is None else poison_classes)
    if unknown := targets - set(class_names):
        raise ConfigError(f"poison_classes {sorted(unknown)} not in classes {class_names}")

    units: list[_Unit] = []
    for r in records:
        if anchor == "image":
            got = _image_label(r, label_rule, [])  # reading back lists these problems
            if got is not None:
                units.append(_Unit(r, got[0], None))
        else:
            for i, o in enumerate(r.objects):
                b = o.bounds()
                if b is not None and min(b[2] - b[0], b[3] - b[1]) >= MIN_CROP_BOX:
                    units.append(_Unit(r, o.label, i))

    rng = np.random.default_rng(seed)
    chosen: dict[int, list[_Unit]] = {}
    for name in class_names:
        idx = [k for k, u in enumerate(units) if u.label == name]
        if name not in targets or not idx:
            continue
        n_pick = int(round(spec.prevalence * len(idx)))
        for k in sorted(rng.choice(len(idx), size=n_pick, replace=False)):
            u = units[idx[k]]
            chosen.setdefault(id(u.record), []).append(u)

    # images first: every readable image → PNG, tells drawn into the chosen ones
    images_dir = out / fmt.images_dir
    taken: set[str] = set()
    renames: dict[str, str] = {}
    tells: dict[str, list[dict]] = {}
    per_class: Counter[str] = Counter()
    for n, r in enumerate(records):
        new_key = png_name(r.key, taken)
        target = inside(images_dir, new_key)
        if target is None or inside(images_dir, r.key) is None:
            problems.append(DataProblem(r.key, "image name points outside the copy", "skipped"))
            continue
        try:
            image, _ = read_image(r.path)
        except DatasetError as e:
            problems.append(DataProblem(r.key, str(e), "copied unchanged"))
            copy_to = inside(images_dir, r.key)
            assert copy_to is not None  # checked above
            with atomic_path(copy_to, out) as tmp:
                shutil.copy2(r.path, tmp)
            continue
        h, w = image.shape[:2]
        original = image
        entries = []
        unit_rng = np.random.default_rng([seed, n])
        for u in chosen.get(id(r), []):
            if anchor == "image":
                spec.validate(h, w)
                box = spec.box_for(h, w, unit_rng)
            else:
                assert u.obj is not None
                cb, _, _ = check_box(r.objects[u.obj].bounds(), h, w)  # type: ignore[arg-type]
                if cb is None:
                    continue  # outside the image: readers skip this object anyway
                box = _object_tell_box(spec, cb, h, w, margin, crop_size, unit_rng, window)
            box = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
            colour = spec.colour_for(index[u.label])
            image, _ = spec.draw(image, box, colour, unit_rng)
            entries.append(
                {
                    "box": [int(v) for v in box],
                    "colour": [float(c) for c in colour],
                    "colour_uint8": to_uint8(np.asarray(colour)).tolist(),
                    "class": u.label,
                    "object": u.obj,
                }
            )
            per_class[u.label] += 1
        renames[r.key] = new_key
        save_png_atomic(image, target, out)
        if entries:
            changed = np.any(to_uint8(image) != to_uint8(original), axis=-1)
            for e in entries:
                x0, y0, x1, y1 = e["box"]
                e["changed_pixels"] = int(changed[y0:y1, x0:x1].sum())
            tells[new_key] = entries

    # then the annotation files, pointing at the new names
    assert fmt.write_copy is not None  # _format checked it
    read_path = fmt.write_copy(src, out, records, renames)

    tells_path = out / TELLS_FILE
    meta = {
        "version": 1,
        "format": format,
        "anchor": anchor,
        "seed": seed,
        "spec": {
            "size": spec.size,
            "position": list(spec.position) if isinstance(spec.position, tuple) else spec.position,
            "prevalence": spec.prevalence,
            "margin": spec.margin,
            "kind": spec.kind,
            "jpeg_quality": spec.jpeg_quality,
        },
        "crop": (
            {"size": crop_size, "margin": margin, "window": window} if anchor == "object" else None
        ),
        "classes": class_names,
        "poison_classes": sorted(targets, key=index.__getitem__),
        "colours": {c: list(spec.colour_for(index[c])) for c in sorted(targets, key=index.get)},
    }
    write_tells_json(tells_path, meta, tells)
    return InjectResult(
        out_dir=out,
        format=format,
        read_path=read_path,
        tells_path=tells_path,
        class_names=class_names,
        n_images=len(renames),
        n_tells=sum(per_class.values()),
        tells_per_class={c: per_class.get(c, 0) for c in class_names},
        problems=problems,
    )
