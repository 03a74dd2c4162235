"""``ReadOptions``: every reader option in one value, so the four readers share one signature.

``read_dataset(path, format, **options)`` and the ``read_*`` functions keep taking the same
keyword names as before; ``reader_options`` folds them into a ``ReadOptions`` and refuses, with
one ``ConfigError``, a name no reader knows or one that does not apply to the format (an
ImageFolder has no objects, so crop and label options make no sense for it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from leakaudit.data.geometry import DEFAULT_MARGIN
from leakaudit.errors import ConfigError

DETECTION_ONLY = ("mode", "label_rule", "margin", "window", "pad")  # not for imagefolder


@dataclass(frozen=True)
class ReadOptions:
    """What to read and how (meanings in the ``leakaudit.data.formats`` docstring).

    Values are validated where they are used (``build_dataset``, ``images.pixel_cap``)."""

    mode: str = "image"  # "image" or "crop" (detection formats)
    size: int | None = None  # output side; None: the first image's size (image mode)
    classes: Sequence[str] | None = None  # class names and their order; None: from the data
    skip_unknown: bool = False  # drop objects of classes not in ``classes`` (else an error)
    label_rule: str = "unique"  # image mode with several classes per image
    margin: float = DEFAULT_MARGIN  # crop context per side (fraction of the box's long side)
    window: float | None = None  # fixed crop side in image pixels instead of ``margin``
    pad: str = "edge"  # numpy pad mode for crops of boxes larger than the image
    max_per_class: int | None = None  # seeded subsample cap
    seed: int = 0
    tells_path: str | Path | None = None  # tells.json; default: beside the annotations
    max_pixels: int | None = None  # pixel cap; None: $LEAKAUDIT_MAX_PIXELS or MAX_PIXELS

    def build_kwargs(self) -> dict[str, Any]:
        """The keyword arguments ``build_dataset`` takes (all but ``tells_path``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tells_path"}


def reader_options(
    format: str, options: ReadOptions | None, overrides: Mapping[str, Any]
) -> ReadOptions:
    """``options`` (default ``ReadOptions()``) with ``overrides`` applied, checked for a format."""
    known = {f.name for f in fields(ReadOptions)}
    bad = sorted(
        k for k in overrides if k not in known or (format == "imagefolder" and k in DETECTION_ONLY)
    )
    if bad:
        raise ConfigError(f"option(s) not supported by the {format} reader: {', '.join(bad)}")
    opts = replace(options or ReadOptions(), **overrides)
    if format == "imagefolder":
        default = ReadOptions()
        changed = [k for k in DETECTION_ONLY if getattr(opts, k) != getattr(default, k)]
        if changed:
            raise ConfigError(
                f"option(s) not supported by the imagefolder reader: {', '.join(changed)} "
                "(whole images have no objects to crop or vote on)"
            )
    return opts
