"""``leakaudit insight``: every look-inside view of one model on one HTML page. Parse, call, print.

Writes only ``OUT/insight.html``. Bad input raises ``LeakauditError`` subclasses, which the
main CLI prints as one line with exit code 2.
"""

from __future__ import annotations

from types import SimpleNamespace

import click

from leakaudit.cli_model_options import model_input_options
from leakaudit.cli_types import FORMAT_OPTION, MODES, POSITIVE, SEED
from leakaudit.errors import ConfigError, ModelLoadError
from leakaudit.insight import N_CHANNEL_VIS

ACCURACY_IMAGES = 256  # images (stratified) on which the near-chance warning is decided


def _ints(value: str, what: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError as e:
        raise ConfigError(f"{what}: expected comma-separated integers, got {value!r}") from e
    if not out:
        raise ConfigError(f"{what}: no values in {value!r}")
    return out


def parse_suspect(value: str) -> tuple[tuple[int, ...], tuple[float, float, float]]:
    """``x0,y0,x1,y1=#rrggbb`` or ``x0,y0,x1,y1=r,g,b`` (floats in [0, 1]) → (box, colour)."""
    box_text, sep, colour_text = value.partition("=")
    if not sep:
        raise ConfigError(f"--suspect {value!r}: expected x0,y0,x1,y1=#rrggbb")
    box = _ints(box_text, f"--suspect {value!r}")
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise ConfigError(f"--suspect {value!r}: the box needs x0,y0,x1,y1 with x1>x0, y1>y0")
    c = colour_text.strip()
    try:
        if c.startswith("#") and len(c) == 7:
            colour = tuple(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5))
        else:
            colour = tuple(float(v) for v in c.split(","))
    except ValueError as e:
        raise ConfigError(f"--suspect {value!r}: cannot read colour {c!r}") from e
    if len(colour) != 3 or not all(0 <= v <= 1 for v in colour):
        raise ConfigError(f"--suspect {value!r}: colour must be #rrggbb or three values in [0, 1]")
    return box, colour  # type: ignore[return-value]


def _output_width(model, side: int, path: str) -> int:
    import torch  # imported here: `leakaudit --help` must not load torch

    with torch.no_grad():
        for shape in ((1, 3, side, side), (1, 1, side, side)):
            try:
                out = model(torch.full(shape, 0.5))
            except Exception:
                continue
            out = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(out, torch.Tensor) and out.ndim == 2:
                return int(out.shape[1])
    raise ModelLoadError(f"{path}: cannot run the model on a {side}×{side} image to count classes")


@click.command("insight")
@click.option("--model", "model_path", required=True, help="TorchScript file or state_dict.")
@click.option("--arch", default=None, help="module:Class, file.py:Class or a bundled name.")
@click.option("--classes", default=None, help="Class names in the model's output order.")
@click.option("--data", default=None, help="Images to show (viewer, feature maps, DeepDream).")
@FORMAT_OPTION
@click.option(
    "--mode", type=MODES, default="image", show_default=True, help="crop: VOC/COCO/CSV objects."
)
@click.option(
    "--size",
    type=click.IntRange(4, 4096),
    default=None,
    help="Input side in pixels [card, else 64].",
)
@click.option(
    "--n-images",
    type=POSITIVE,
    default=8,
    show_default=True,
    help="Images shown in the feature-map, DeepDream and viewer panels.",
)
@model_input_options
@click.option(
    "--steps",
    default="200,350,500",
    show_default=True,
    help="Ascent step counts: the class pictures are shown after each, the channel pictures "
    "after the last (fewer steps: a faster page, less refined pictures).",
)
@click.option(
    "--channels",
    type=click.IntRange(min=0),
    default=N_CHANNEL_VIS,
    show_default=True,
    help="Channels of the deepest watched layer visualised (0: none).",
)
@click.option("--layers", default=None, help="Layers for feature maps [every activation].")
@click.option("--dream-layer", default=None, help="DeepDream layer [deepest watched].")
@click.option(
    "--suspect",
    "suspects",
    multiple=True,
    help="x0,y0,x1,y1=#rrggbb: measure this box and colour in every class picture (repeatable).",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Seed for the visualisations and the image choice.",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for insight.html (nothing is written elsewhere).",
)
def insight(model_path, arch, classes, data, format_, mode, size, n_images, preprocess, mean, std,
            channel_order, steps, channels, layers, dream_layer, suspects, seed,
            out_dir):  # fmt: skip
    """Look inside a model: filters, feature maps, class and channel visualisations, DeepDream,
    pixel influence, a classification viewer, each next to an untrained twin → OUT/insight.html."""
    from leakaudit.auditing.eval_set import accuracy_notes, stratified_limit
    from leakaudit.cli_model_options import resolve_model_input
    from leakaudit.data.formats import read_dataset
    from leakaudit.insight.page import PageOptions, build_page, write_page
    from leakaudit.models.load import ModelSpec, load_model, read_checkpoint_meta
    from leakaudit.paths import check_out_dir
    from leakaudit.runtime import configure

    check_out_dir(out_dir)  # before any work: a run must not fail at the end on a bad --out
    configure()
    meta = read_checkpoint_meta(model_path)
    prep = meta.get("preprocessing") or {}
    feed = resolve_model_input(meta, preprocess, mean, std, channel_order)  # as the audit does
    page_opts = PageOptions(
        steps=_ints(steps, "--steps"),
        seed=seed,
        layers=[s.strip() for s in layers.split(",")] if layers else None,
        dream_layer=dream_layer,
        suspects=[parse_suspect(s) for s in suspects],
        channels=channels,
    )  # bad values stop here, before any data is read
    checked = None
    names = [c.strip() for c in classes.split(",")] if classes else meta.get("classes")
    size = size or prep.get("input_size")
    images = labels = None
    if data:
        opts = {"classes": names, "size": size or 64}
        if mode != "image":
            opts["mode"] = mode
        ds = read_dataset(data, format_, **opts)
        if len(ds) == 0:
            raise ConfigError(f"{data}: no usable images")
        names = names or list(ds.class_names)
        checked = stratified_limit(ds, ACCURACY_IMAGES, seed)
        ds = stratified_limit(ds, n_images, seed)
        images, labels = ds.images(), ds.labels()
        size = images.shape[1]
    model = load_model(model_path, arch, None, n_classes=len(names) if names else None)
    spec = ModelSpec(path=model_path, input_size=size, **feed)
    model = spec.wrap(model)
    width = _output_width(model, size or 64, model_path)
    names = names or [str(k) for k in range(width)]
    if width != len(names):
        raise ModelLoadError(f"{model_path} outputs {width} scores but {len(names)} classes given")
    grey = False
    if images is not None and images.shape[-1] == 3:
        try:
            from leakaudit.insight.common import input_shape

            grey = input_shape(model, size)[0] == 1
        except ConfigError:
            pass
    if grey:
        images = images.mean(axis=-1, keepdims=True)
    warnings = []
    if checked is not None:
        warnings = accuracy_notes("The model", _scored(model, checked, grey), checked)
    for line in warnings:  # before the slow part: a wrongly fed model's page means little
        click.echo(line, err=True)
    ctx = build_page(model, names, images, labels, size, page_opts, source=str(model_path))
    ctx["notes"] = warnings + ctx["notes"]
    path = write_page(out_dir, ctx)
    click.echo(f"insight page: {path}")


def _scored(model, data, grey: bool) -> SimpleNamespace:
    """The model's accuracy on ``data``, as ``accuracy_notes`` reads it (``eval_accuracy``)."""
    import numpy as np

    from leakaudit.insight.viewer import classify

    images = data.images()
    if grey:
        images = images.mean(axis=-1, keepdims=True)
    labels = data.labels()
    rows = classify(model, images, labels)
    return SimpleNamespace(eval_accuracy=float(np.mean([r.correct for r in rows])))
