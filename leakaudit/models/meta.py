"""Checking the metadata stored beside a checkpoint's weights: it is untrusted data.

A checkpoint can come from anywhere, and ``torch.load(weights_only=True)`` only guarantees plain
Python types, not sensible ones. Every field that leakaudit acts on is checked here, with a
one-line message naming the file and the field, before anything uses it: a 30000-pixel
``input_size`` would otherwise make the reader allocate gigabytes, a string one would crash
deep inside resizing, and an ``arch`` naming a Python file would be imported (the loader only
accepts bundled names from metadata, see ``leakaudit.models.arch.is_bundled``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from leakaudit.errors import ModelLoadError
from leakaudit.models.arch import is_bundled, meta_build
from leakaudit.models.zoo import ARCHITECTURES

MAX_INPUT_SIDE = 4096
"""Largest input side (pixels) metadata may ask for, unless the caller passes another cap.

Image classifiers take 224–600 px (the largest common ones ~1000); one 4096×4096 float RGB image
is already 200 MB and a batch of them exceeds most machines, so a bigger value is corrupt or
hostile metadata. It is refused before any image is resized to it.
"""


def _show(value: Any) -> str:
    """A short, escaped rendering of an untrusted value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_triple(where: str, name: str, value: Any, positive: bool) -> None:
    if value is None:
        return
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(map(_number, value))):
        raise ModelLoadError(
            f"{where}: metadata preprocessing '{name}' must be 3 numbers (R, G, B), "
            f"got {_show(value)}"
        )
    if positive and any(v <= 0 for v in value):
        raise ModelLoadError(f"{where}: metadata preprocessing '{name}' must be > 0, got {value}")


def check_input_size(value: Any, where: str, max_side: int = MAX_INPUT_SIDE) -> int | None:
    """``value`` if it is a whole number of pixels in [1, ``max_side``] (or None)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelLoadError(
            f"{where}: metadata 'input_size' must be a whole number of pixels, got "
            f"{type(value).__name__} {_show(value)}"
        )
    if not 1 <= value <= max_side:
        raise ModelLoadError(
            f"{where}: metadata 'input_size' is {value}; it must be between 1 and {max_side} "
            "pixels (leakaudit.models.meta.MAX_INPUT_SIDE)"
        )
    return value


def check_meta(
    meta: Mapping[str, Any], path: str | Path, max_input_side: int = MAX_INPUT_SIDE
) -> dict[str, Any]:
    """The checkpoint's metadata (everything but ``state_dict``), every field leakaudit reads
    checked; raises a one-line ``ModelLoadError`` naming ``path`` and the field.

    Checked: ``arch`` (a string; whether it may be imported is the loader's decision),
    ``arch_kwargs`` (a dict with string keys; with a bundled ``arch``, whole numbers where the
    constructor takes them and a model under ``arch.MAX_PARAMS``, built on the meta device),
    ``classes`` (distinct strings),
    ``preprocessing`` (a dict: ``input_size``, ``mean``, ``std``, ``crop``), ``metrics`` (a
    dict) and ``seed`` (an integer). Unknown fields are kept and never acted on.
    """
    where = str(path)
    out = {str(k): v for k, v in meta.items() if k != "state_dict"}

    def need(ok: bool, name: str, what: str) -> None:
        if not ok:
            value = out.get(name)
            raise ModelLoadError(
                f"{where}: metadata '{name}' must be {what}, got {type(value).__name__} "
                f"{_show(value)}"
            )

    arch = out.get("arch")
    need(arch is None or isinstance(arch, str), "arch", "an architecture name (a string)")
    kw = out.get("arch_kwargs")
    need(
        kw is None or (isinstance(kw, dict) and all(isinstance(k, str) for k in kw)),
        "arch_kwargs",
        "a dict of keyword arguments",
    )
    classes = out.get("classes")
    need(
        classes is None
        or (
            isinstance(classes, list)
            and len(classes) > 0
            and all(isinstance(c, str) for c in classes)
        ),
        "classes",
        "a non-empty list of class names (strings)",
    )
    if classes is not None and len(set(classes)) != len(classes):
        dupes = sorted(c for c, n in Counter(classes).items() if n > 1)
        raise ModelLoadError(f"{where}: metadata 'classes' repeats {_show(dupes)}")
    if kw and is_bundled(arch):  # before any data is read: a hostile width fails here
        try:
            meta_build(ARCHITECTURES[arch], kw, len(classes or ()) or 2)
        except ModelLoadError as e:
            raise ModelLoadError(f"{where}: metadata {e}") from e
    need(out.get("metrics") is None or isinstance(out["metrics"], dict), "metrics", "a dict")
    seed = out.get("seed")
    need(seed is None or (isinstance(seed, int) and not isinstance(seed, bool)), "seed", "an int")

    prep = out.get("preprocessing")
    need(prep is None or isinstance(prep, dict), "preprocessing", "a dict")
    if prep:
        check_input_size(prep.get("input_size"), where, max_input_side)
        _check_triple(where, "mean", prep.get("mean"), positive=False)
        _check_triple(where, "std", prep.get("std"), positive=True)
        crop = prep.get("crop")
        ok = crop is None or (
            isinstance(crop, dict)
            and _number(crop.get("margin"))
            and crop["margin"] >= 0
            and (crop.get("window") is None or (_number(crop["window"]) and crop["window"] > 0))
        )
        if not ok:
            raise ModelLoadError(
                f"{where}: metadata preprocessing 'crop' must be a dict with a margin ≥ 0 and a "
                f"window > 0 or null, got {_show(crop)}"
            )
    return out
