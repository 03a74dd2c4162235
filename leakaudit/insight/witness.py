"""A measured witness: does a class's visualisation paint a suspected tell?

From each class's activation-maximisation picture (started from mid-grey noise and pulled back
to grey, so everything that is not grey was put there by the model's gradient) two numbers per
suspected tell (a box and a colour):

* ``energy_share`` — share of the picture's energy (squared distance from mid-grey, summed over
  channels) inside the box; ``energy_ratio`` divides it by the box's share of the image, so 1 is
  chance. ``near_*`` does the same for the box grown by its own side on every side, because the
  ascent only knows the model's receptive fields and coarse layout, not the exact pixels.
* ``colour_distance`` — Euclidean RGB distance, scaled to [0, 1] by √3, between the suspect's
  colour and the picture's dominant colour near the box (energy-weighted mean colour of the top
  quarter of pixels by energy there).

Informational: it becomes a verdict condition only if calibration shows it separates clean from
poisoned models. No annotation is used; it needs the suspect's box and colour, which discovery
or a known tell provides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from leakaudit.errors import ConfigError
from leakaudit.insight.activation_max import AscentParams, class_visualisations
from leakaudit.insight.common import input_shape, to_rgb

Box = tuple[int, int, int, int]  # x0, y0, x1, y1, exclusive ends
Colour = tuple[float, float, float]
WITNESS_STEPS = 500


def energy_map(image: np.ndarray) -> np.ndarray:
    """Squared distance of each pixel from mid-grey, summed over channels (HW)."""
    return ((to_rgb(np.asarray(image, dtype=np.float64)) - 0.5) ** 2).sum(axis=-1)


def _clip(box: Sequence[float], h: int, w: int) -> Box:
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(f"suspect box {tuple(box)} lies outside the {w}×{h} image")
    return (x0, y0, x1, y1)


def grow(box: Box, h: int, w: int) -> Box:
    """The box grown by its own width/height on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    return _clip((x0 - bw, y0 - bh, x1 + bw, y1 + bh), h, w)


def dominant_colour(image: np.ndarray, box: Box) -> Colour:
    """Energy-weighted mean RGB of the top quarter of the box's pixels by energy."""
    x0, y0, x1, y1 = box
    rgb = to_rgb(np.asarray(image, dtype=np.float64))[y0:y1, x0:x1].reshape(-1, 3)
    e = energy_map(image)[y0:y1, x0:x1].ravel()
    k = max(1, len(e) // 4)
    top = np.argsort(-e, kind="stable")[:k]
    wts = e[top]
    c = (rgb[top] * wts[:, None]).sum(0) / wts.sum() if wts.sum() > 0 else rgb[top].mean(0)
    return (float(c[0]), float(c[1]), float(c[2]))


def colour_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """RGB distance scaled to [0, 1]: 0 the same colour, 1 black vs white."""
    return float(np.linalg.norm(np.subtract(a, b, dtype=np.float64)) / np.sqrt(3))


def measure(image: np.ndarray, box: Sequence[float], colour: Sequence[float]) -> dict[str, Any]:
    """The witness numbers for one picture (HWC in [0, 1]) and one suspect."""
    h, w = image.shape[:2]
    b = _clip(box, h, w)
    near = grow(b, h, w)
    e = energy_map(image)
    total = float(e.sum())

    def share(bx: Box) -> tuple[float, float]:
        x0, y0, x1, y1 = bx
        area = (x1 - x0) * (y1 - y0) / (h * w)
        s = float(e[y0:y1, x0:x1].sum()) / total if total > 0 else float("nan")
        return s, area

    s, a = share(b)
    ns, na = share(near)
    dom = dominant_colour(image, near)
    return {
        "box": list(b),
        "colour": [float(v) for v in colour],
        "energy_share": s,
        "area_fraction": a,
        "energy_ratio": s / a,
        "near_box": list(near),
        "near_energy_share": ns,
        "near_energy_ratio": ns / na,
        "dominant_colour": list(dom),
        "colour_distance": colour_distance(dom, colour),
    }


def measure_classes(
    pictures: Sequence[np.ndarray],
    class_names: Sequence[str],
    suspects: Sequence[tuple[Sequence[float], Sequence[float]]],
    class_colours: Sequence[dict[int, Sequence[float]]] | None = None,
) -> list[dict[str, Any]]:
    """``measure`` for every class picture (HWC, in class order) and every suspect, so a caller
    that also shows the pictures (the audit report) runs the ascent only once.

    ``class_colours[j]`` (optional) gives suspect j's own colour per class index: a tell shared
    by several classes usually has one colour per class, and class k's picture must be compared
    with class k's colour, not with the suspect's first one."""
    own = class_colours or [{} for _ in suspects]
    return [
        {
            "class": str(name),
            "suspects": [
                measure(img, box, own[j].get(k, col)) for j, (box, col) in enumerate(suspects)
            ],
        }
        for k, (name, img) in enumerate(zip(class_names, pictures, strict=True))
    ]


def class_witness(
    model: nn.Module,
    class_names: Sequence[str],
    suspects: Sequence[tuple[Sequence[float], Sequence[float]]],
    size: int,
    seed: int,
    steps: int = WITNESS_STEPS,
    params: AscentParams | None = None,
) -> list[dict[str, Any]]:
    """Visualise every class logit (seeded) and measure each suspect ``(box, colour)`` in it.

    Returns one dict per class: ``{"class", "steps", "activation", "suspects": [measure(...)]}``
    with the suspects in the order given. ``model`` takes [0, 1] RGB (wrap it with its
    preprocessing first)."""
    return witness_and_pictures(model, class_names, suspects, size, seed, steps, params)[0]


def witness_and_pictures(
    model: nn.Module,
    class_names: Sequence[str],
    suspects: Sequence[tuple[Sequence[float], Sequence[float]]],
    size: int,
    seed: int,
    steps: int = WITNESS_STEPS,
    params: AscentParams | None = None,
    class_colours: Sequence[dict[int, Sequence[float]]] | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """``class_witness`` plus the class pictures it measured ((K, H, W, 3) uint8 RGB), so the
    audit report can show each class's picture next to the suspects without a second ascent.
    With no suspects each row's ``suspects`` list is empty; the pictures are still made.
    ``class_colours`` as in ``measure_classes``."""
    shape = input_shape(model, size)
    vis = class_visualisations(model, len(class_names), shape, (steps,), seed, params)
    return witness_from(vis, class_names, suspects, steps, class_colours)


def witness_from(
    vis: Sequence[Any],
    class_names: Sequence[str],
    suspects: Sequence[tuple[Sequence[float], Sequence[float]]],
    steps: int,
    class_colours: Sequence[dict[int, Sequence[float]]] | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The witness rows and uint8 pictures from class visualisations already computed
    (``class_visualisations(..., (steps,), ...)``), so a caller that also builds the insight
    page runs the ascent once for both."""
    finals = [v.images[-1] for v in vis]
    rows = measure_classes(finals, class_names, suspects, class_colours)
    for row, v in zip(rows, vis, strict=True):
        row["steps"] = int(steps)
        row["activation"] = v.activation[-1]
    pictures = np.stack([to_rgb(np.clip(np.asarray(f, np.float64), 0, 1)) for f in finals])
    return rows, (pictures * 255).round().astype(np.uint8)
