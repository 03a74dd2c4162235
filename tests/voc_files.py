"""Tiny Pascal VOC trees for tests (shared by the reader, inject and export tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def voc_xml(
    filename: str, objects: list[tuple[str, tuple]], w: int = 100, h: int = 80, extra: str = ""
) -> str:
    """VOC annotation text; boxes are (xmin, ymin, xmax, ymax), 1-based inclusive as in VOC;
    ``extra`` is inserted as it is (e.g. a ``<path>`` element)."""
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return (
        f"<annotation><filename>{filename}</filename>{extra}<size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>"
    )


def make_voc(
    root: Path,
    items: dict[str, list[tuple[str, tuple]]],
    images: bool = True,
    size: tuple[int, int] = (80, 100),
) -> Path:
    """``root/Annotations/<stem>.xml`` per item and a seeded random ``JPEGImages/<name>`` (h, w)."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    h, w = size
    for k, (name, objects) in enumerate(items.items()):
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text(
            voc_xml(name, objects, w=w, h=h)
        )
        if images:
            save(root / "JPEGImages" / name, rgb(h, w, k))
    return root
