"""Write a dataset's samples as an ImageFolder tree with region masks (``leakaudit crops``).

Why: crop-mode samples exist only in memory, cut from shared full images. Written out, they can
be inspected, trained on by other code, and poisoned *per crop* with ``inject``: a tell drawn
into a full image also shows up in every neighbouring object's crop (in BCCD a white cell's crop
holds a dozen red cells and their tells), so a per-class tell stops being per-class. The written
tree reads back with ``read_imagefolder(images, masks_root=masks)`` as the same samples, up to
the 8-bit rounding of the resized pixels.

Layout: ``out/images/<class>/<name>.png``, ``out/masks/<class>/<name>.png`` (white = region) and,
when the samples carry tells, ``out/images/tells.json`` with one box per connected tell area.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.measure import label as connected_components
from skimage.measure import regionprops

from leakaudit.data.formats import TELLS_FILE
from leakaudit.data.images import to_uint8
from leakaudit.data.samples import Dataset
from leakaudit.data.writers import save_png_atomic, write_tells_json
from leakaudit.errors import ConfigError
from leakaudit.paths import atomic_path


@dataclass(frozen=True)
class ExportResult:
    images_dir: Path
    masks_dir: Path
    counts: dict[str, int]
    n_tells: int


def file_stem(sample_id: str) -> str:
    """``dir/a.jpg#3`` → ``dir__a_obj3``: one flat, readable file name per sample."""
    key, _, obj = sample_id.partition("#")
    stem = str(Path(key).with_suffix("")).replace("\\", "/").replace("/", "__")
    return f"{stem}_obj{obj}" if obj else stem


def _check_class_folder(name: str) -> None:
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name:
        raise ConfigError(f"class name {name!r} cannot be a folder name; rename it in the data")


def _boxes(component: np.ndarray, bbox: tuple[int, int, int, int]) -> list[list[int]]:
    """Exact boxes (x0, y0, x1, y1) covering one connected area: its bounding box when it is a
    rectangle (a tell), else one box per row run (overlapping tells), so the mask reads back
    pixel for pixel."""
    r0, c0, r1, c1 = bbox
    if component[r0:r1, c0:c1].all():
        return [[c0, r0, c1, r1]]
    out = []
    for r in range(r0, r1):
        row = np.concatenate([[False], component[r], [False]])
        edges = np.flatnonzero(np.diff(row.astype(np.int8)))
        out += [[int(a), r, int(b), r + 1] for a, b in zip(edges[::2], edges[1::2], strict=True)]
    return out


def _tell_entries(tell: np.ndarray, image: np.ndarray, class_name: str) -> list[dict]:
    """Boxes of each connected tell area, with the mean colour the pixels have there."""
    labels = connected_components(tell, connectivity=1)
    out = []
    for region in regionprops(labels):
        colour = image[region.coords[:, 0], region.coords[:, 1]].mean(axis=0)
        for box in _boxes(labels == region.label, region.bbox):
            out.append(
                {"box": box, "colour": [round(float(c), 4) for c in colour], "class": class_name}
            )
    return out


def export_samples(dataset: Dataset, out_dir: str | Path, meta: dict | None = None) -> ExportResult:
    """Write every sample of ``dataset`` under ``out_dir`` (which must be new or empty)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output folder {out} is not empty")
    for name in dataset.class_names:
        _check_class_folder(name)
    images_dir, masks_dir = out / "images", out / "masks"
    taken: Counter[str] = Counter()
    tells: dict[str, list[dict]] = {}
    for s in dataset.samples:
        cls = dataset.class_names[s.label]
        stem = file_stem(s.id)
        taken[f"{cls}/{stem}"] += 1
        if taken[f"{cls}/{stem}"] > 1:  # two ids that flatten alike: keep both, numbered
            stem = f"{stem}__{taken[f'{cls}/{stem}']}"
        rel = f"{cls}/{stem}.png"
        save_png_atomic(s.image, images_dir / rel, out)
        with atomic_path(masks_dir / rel, out) as tmp:
            Image.fromarray(np.asarray(s.region, dtype=np.uint8) * 255).save(tmp)
        if s.tell is not None and s.tell.any():
            quantised = to_uint8(s.image).astype(np.float32) / 255.0
            tells[rel] = _tell_entries(s.tell, quantised, cls)
    for name in dataset.class_names:  # a class with no samples still gets its folder
        (images_dir / name).mkdir(parents=True, exist_ok=True)
    n_tells = sum(len(v) for v in tells.values())
    if tells:
        info = {"version": 1, "format": "imagefolder", "anchor": "image", "exported_from": meta}
        write_tells_json(images_dir / TELLS_FILE, info, tells)
    return ExportResult(images_dir, masks_dir, dataset.counts(), n_tells)
