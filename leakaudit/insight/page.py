"""View 8: every view for a model and its untrained twin on one self-contained HTML page.

``build_page`` computes the views (plain arrays), ``render_page`` turns them into HTML through
``reports_templates/insight.html.j2`` (autoescaped: class names and paths come from data; PNGs
are inlined as data: URIs, no external assets), ``write_page`` writes ``insight.html`` into the
output folder and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from torch import nn

from leakaudit.errors import ConfigError
from leakaudit.insight import N_CHANNEL_VIS
from leakaudit.insight.activation_max import (
    DEFAULT_STEPS,
    AscentParams,
    Target,
    activation_maximisation,
)
from leakaudit.insight.common import default_layers, input_shape, minmax, signed_to_unit, to_rgb
from leakaudit.insight.compare_untrained import untrained_copy, view_distance
from leakaudit.insight.deepdream import deepdream
from leakaudit.insight.feature_maps import feature_maps
from leakaudit.insight.filters import first_layer_filters
from leakaudit.insight.pixel_influence import closed_form_influence, gradient_influence
from leakaudit.insight.viewer import classify
from leakaudit.insight.witness import measure
from leakaudit.paths import OutputSet
from leakaudit.report.pictures import data_uri, heat, upscale

MAX_CHANNELS = 16  # feature-map panels per layer: enough to see a pattern, page stays small


@dataclass
class PageOptions:
    steps: tuple[int, ...] = DEFAULT_STEPS
    seed: int = 0
    layers: list[str] | None = None  # feature-map layers; default: every activation layer
    dream_layer: str | None = None  # default: the deepest default layer
    suspects: list[tuple[Sequence[float], Sequence[float]]] = field(default_factory=list)
    params: AscentParams = field(default_factory=AscentParams)
    channels: int = N_CHANNEL_VIS  # channels of the deepest watched layer visualised (0: none)


def pic(image: np.ndarray, display: int = 96) -> str:
    """HWC (1 or 3 channels) in [0, 1] → PNG data URI, upscaled by an integer to ~``display``."""
    img = to_rgb(np.clip(np.asarray(image, dtype=np.float64), 0, 1))
    factor = max(1, display // max(img.shape[:2]))
    return data_uri(upscale(img, factor))


def _signed_pic(a: np.ndarray, display: int = 96) -> str:
    """A signed map (HWC): per-channel colour when RGB, red/blue diverging when one channel."""
    a = np.asarray(a, dtype=np.float64)
    if a.shape[-1] == 3:
        return pic(signed_to_unit(a), display)
    u = signed_to_unit(a[..., 0])
    rgb = np.stack([np.clip(2 * u, 0, 1), 1 - 2 * np.abs(u - 0.5), np.clip(2 - 2 * u, 0, 1)], -1)
    return pic(rgb, display)


def _views(
    model: nn.Module,
    class_names: Sequence[str],
    images: np.ndarray | None,
    labels: np.ndarray | None,
    size: int | None,
    opts: PageOptions,
    notes: list[str],
    classes: list[Any] | None = None,
) -> dict[str, Any]:
    """Every view of one model as arrays (no pictures yet), so the twins can be compared.
    ``classes``: this model's class visualisations at ``opts.steps``, when already computed.

    A view the model cannot give (no closed form for a CNN, no layer hooks in TorchScript) is
    left out with a note on the page, never replaced by something else."""
    shape = input_shape(model, size)
    out: dict[str, Any] = {"shape": shape, "filters": None, "closed_form": None, "channels": []}

    def attempt(what: str, fn):
        try:
            return fn()
        except ConfigError as e:
            if what not in {n.split(":")[0] for n in notes}:
                notes.append(f"{what}: left out ({e})")
            return None

    out["filters"] = attempt("first-layer filters", lambda: first_layer_filters(model, size))
    out["closed_form"] = attempt(
        "closed-form pixel influence", lambda: closed_form_influence(model, size)
    )
    layers = opts.layers or default_layers(model)
    if not layers and "layer views" not in {n.split(":")[0] for n in notes}:
        notes.append(
            "layer views: left out (no activation or conv layers found by type; a TorchScript "
            "model hides them: name layers with --layers or pass a state_dict and its --arch)"
        )
    if images is not None and len(images):
        out["gradient_influence"] = gradient_influence(model, images)
        out["viewer"] = classify(model, images, labels)
        if layers:
            shown = images[: min(2, len(images))]
            out["feature_maps"] = attempt(
                "feature maps", lambda: feature_maps(model, shown, layers)
            )
            dream_layer = opts.dream_layer or layers[-1]
            out["dream"] = attempt(
                "DeepDream", lambda: deepdream(model, images[0], dream_layer, seed=opts.seed)
            )
    channels: list[Target] = []
    if layers and opts.channels > 0:
        deep = layers[-1]
        width = attempt("channel visualisations", lambda: _width(model, deep, shape))
        if width:
            channels = [Target(i, deep) for i in range(min(opts.channels, width))]
    out["classes"], out["channels"] = _ascents(model, len(class_names), channels, shape, opts,
                                               classes)  # fmt: skip
    return out


def _ascents(
    model: nn.Module,
    n_classes: int,
    channels: list[Target],
    shape: tuple[int, int, int],
    opts: PageOptions,
    classes: list[Any] | None,
) -> tuple[list[Any], list[Any]]:
    """(class visualisations at ``opts.steps``, channel visualisations at the last step count)
    from one batched ascent: the classes' pictures are what ``class_visualisations`` gives
    alone (``activation_max._start_noise``). ``classes`` already computed (the audit's witness)
    are reused, and only the channels are optimised."""
    targets = [Target(k) for k in range(n_classes)] if classes is None else []
    targets += channels
    steps = opts.steps if classes is None else (opts.steps[-1],)
    vis = activation_maximisation(model, targets, shape, steps, opts.seed, opts.params)
    k = n_classes if classes is None else 0
    for v in vis[k:]:  # a channel is shown at the last step count only
        v.steps, v.images, v.activation = v.steps[-1:], v.images[-1:], v.activation[-1:]
    return (vis[:k] if classes is None else classes), vis[k:]


def _width(model: nn.Module, layer: str, shape: tuple[int, int, int]) -> int:
    """Channels (or units) a layer outputs, from one blank forward pass."""
    return int(
        feature_maps(model, np.full((1, shape[1], shape[2], shape[0]), 0.5), [layer])[layer].shape[
            1
        ]
    )


def build_page(
    model: nn.Module,
    class_names: Sequence[str],
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    size: int | None = None,
    opts: PageOptions | None = None,
    title: str = "leakaudit insight",
    source: str = "",
    classes: list[Any] | None = None,
) -> dict[str, Any]:
    """Compute every view for ``model`` (input [0, 1] RGB) and a seeded untrained copy; return
    the template's context: pictures as data URIs, numbers as floats. ``classes``: the model's
    class visualisations at ``opts.steps`` with ``opts.seed`` and ``opts.params``, if the
    caller already has them (the audit's witness), so they are not computed twice."""
    opts = opts or PageOptions()
    untrained = untrained_copy(model, opts.seed)
    notes: list[str] = []
    views = {
        "trained": _views(model, class_names, images, labels, size, opts, notes, classes),
        "untrained": _views(untrained, class_names, images, labels, size, opts, notes),
    }
    tr, un = views["trained"], views["untrained"]
    distances = {}
    if tr["filters"] is not None:
        distances["first-layer filters"] = view_distance(
            tr["filters"].weights, un["filters"].weights
        )
    distances["class visualisations"] = view_distance(
        np.stack([v.images[-1] for v in tr["classes"]]),
        np.stack([v.images[-1] for v in un["classes"]]),
    )
    if "gradient_influence" in tr:
        distances["pixel influence (mean gradient)"] = view_distance(
            tr["gradient_influence"], un["gradient_influence"]
        )
        distances["class probabilities"] = view_distance(
            np.stack([c.probs for c in tr["viewer"]]), np.stack([c.probs for c in un["viewer"]])
        )
    ctx: dict[str, Any] = {
        "title": title,
        "source": source,
        "class_names": [str(c) for c in class_names],
        "shape": list(tr["shape"]),
        "seed": opts.seed,
        "steps": list(opts.steps),
        "params": vars(opts.params),
        "distances": distances,
        "twins": {},
        "viewer": [],
        "notes": notes,
    }
    for which, v in views.items():
        ctx["twins"][which] = _pictures(v, class_names, images, opts)
    if "viewer" in tr:
        for c_tr, c_un in zip(tr["viewer"], un["viewer"], strict=True):
            ctx["viewer"].append(
                {
                    "image": pic(images[c_tr.index], 80),
                    "label": None if c_tr.label is None else str(class_names[c_tr.label]),
                    "rows": [
                        {
                            "name": str(class_names[c.predicted]),
                            "correct": c.correct,
                            "probs": [float(p) for p in c.probs],
                            "which": which,
                        }
                        for which, c in (("trained", c_tr), ("untrained", c_un))
                    ],
                }
            )
    return ctx


def _pictures(
    v: dict[str, Any],
    class_names: Sequence[str],
    images: np.ndarray | None,
    opts: PageOptions,
) -> dict[str, Any]:
    f = v["filters"]
    filters = None
    if f is not None:
        units = [
            {
                "src": _signed_pic(f.weights[i], 48),
                "bias": None if f.bias is None else float(f.bias[i]),
                "influence": None if f.influence is None else float(f.influence[i]),
            }
            for i in range(len(f.weights))
        ]
        filters = {"layer": f.layer, "kind": f.kind, "units": units}
    classes = []
    for name, vis in zip(class_names, v["classes"], strict=True):
        wit = [measure(vis.images[-1], box, col) for box, col in opts.suspects]
        classes.append(
            {
                "name": str(name),
                "pics": [pic(im) for im in vis.images],
                "activation": list(vis.activation),
                "start": vis.start_activation,
                "witness": wit,
            }
        )
    out: dict[str, Any] = {
        "filters": filters,
        "classes": classes,
        "channels": [
            {"label": vis.target.label(), "src": pic(vis.images[-1]), "act": vis.activation[-1]}
            for vis in v["channels"]
        ],
        "closed_form": None,
        "gradient_influence": None,
        "feature_maps": [],
        "dream": None,
    }
    if v["closed_form"] is not None:
        out["closed_form"] = [_signed_pic(m) for m in v["closed_form"]]
    if v.get("gradient_influence") is not None:
        out["gradient_influence"] = [_signed_pic(m) for m in v["gradient_influence"]]
    for name, maps in (v.get("feature_maps") or {}).items():
        for i in range(len(maps)):
            scaled = minmax(maps[i, :MAX_CHANNELS])  # one scale per layer: dead channels stay dark
            out["feature_maps"].append(
                {
                    "layer": name,
                    "image": i,
                    "channels": maps.shape[1],
                    "pics": [pic(heat(ch), 48) for ch in scaled],
                }
            )
    if v.get("dream") is not None:
        d = v["dream"]
        out["dream"] = {
            "layer": d.layer,
            "before": d.objective_before,
            "after": d.objective_after,
            "original": pic(images[0]),
            "src": pic(d.image),
        }
    return out


def _environment() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("leakaudit.reports_templates").joinpath(name).read_text()
    )
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda x, d=3: "–" if x is None or not np.isfinite(x) else f"{x:.{d}f}"
    return env


def render_page(ctx: dict[str, Any]) -> str:
    return _environment().get_template("insight.html.j2").render(**ctx)


def write_page(
    out_dir: str | Path,
    ctx: dict[str, Any],
    name: str = "insight.html",
    outs: OutputSet | None = None,
) -> Path:
    """Write the page as ``name`` (a plain file name) into ``out_dir`` (created if needed),
    atomically and never through a link; staged in ``outs`` when the report commits it."""
    if Path(name).name != name or name in {"", ".", ".."}:
        raise ConfigError(f"insight page name {name!r} is not a plain file name")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    with nullcontext(outs) if outs is not None else OutputSet() as staged:
        staged.path(path, out)  # a link there is refused before the page is rendered
        staged.write(path, render_page(ctx), out)
    return path
