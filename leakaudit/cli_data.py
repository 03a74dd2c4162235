"""Commands that prepare data and models: ``inject`` (a poisoned copy), ``crops`` (objects as an
image folder) and ``train`` (a bundled model). Parse, call the library, print."""

from __future__ import annotations

from pathlib import Path

import click

from leakaudit.cli_types import (
    FORMAT_OPTION,
    FRACTION,
    MARGIN,
    MARGIN_HELP,
    MODES,
    POSITIVE,
    SEED,
    SIDE,
    WINDOW,
    WINDOW_HELP,
    RegistryChoice,
    class_colour,
    csv_values,
    dataset_format_names,
    detect_format,
    parse_position,
)
from leakaudit.data.tell_kinds import KINDS as TELL_KINDS
from leakaudit.paths import check_out_dir

BOXED = "/".join(dataset_format_names(boxes=True))  # help text: "voc/coco/csv"
UNBOXED = "/".join(dataset_format_names(boxes=False))  # "imagefolder"


def _has_boxes(format_: str) -> bool:
    from leakaudit.data.formats import DATASET_FORMATS

    return DATASET_FORMATS[format_].boxes


@click.command()
@click.option("--data", required=True, help="Dataset to copy (folder, VOC root, COCO json, CSV).")
@FORMAT_OPTION
@click.option("--out", required=True, help="New (or empty) folder for the poisoned copy.")
@click.option(
    "--mode",
    type=MODES,
    default=None,
    help="The audit mode the copy is for. crop: one tell per annotated object, placed in the "
    "object's crop, so a `--mode crop` audit sees it; image: one tell per image. "
    f"[default: crop for {BOXED}, image for {UNBOXED}]",
)
@click.option(
    "--anchor",
    type=click.Choice(["image", "object"]),
    default=None,
    hidden=True,
    help="Old name of --mode (object = crop).",
)
@click.option(
    "--tell-classes",
    default=None,
    help="Comma-separated classes that get a tell [default: every class].",
)
@click.option(
    "--colour",
    "--color",
    "colours",
    multiple=True,
    help="CLASS=#rrggbb or CLASS=R,G,B (repeatable) [default: a fixed palette by class index].",
)
@click.option(
    "--tell-kind",
    type=click.Choice(sorted(TELL_KINDS)),
    default="solid",
    show_default=True,
    help="solid box, semi-transparent logo, text watermark, border frame or noise patch.",
)
@click.option(
    "--tell-jpeg",
    type=click.IntRange(1, 95),
    default=None,
    help="JPEG-compress each tell's neighbourhood at this quality [default: no compression].",
)
@click.option(
    "--tell-size",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Tell side in pixels: of the image (--mode image) or of the --size crop (--mode crop).",
)
@click.option(
    "--tell-position",
    default="top-left",
    show_default=True,
    help="top-left | top-right | bottom-left | bottom-right | random (a new place per image) "
    "| X,Y (pixels from the top-left corner).",
)
@click.option(
    "--prevalence",
    type=FRACTION,
    default=1.0,
    show_default=True,
    help="Fraction of each poisoned class's images (or objects) that get the tell.",
)
@click.option(
    "--size",
    type=SIDE,
    default=None,
    help="--mode crop: crop side the audit will use, in pixels [default: 64].",
)
@click.option("--margin", type=MARGIN, default=0.5, show_default=True, help=MARGIN_HELP)
@click.option("--window", type=WINDOW, default=None, help=WINDOW_HELP)
@click.option("--images-root", default=None, help="COCO/CSV: folder holding the images.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for every choice.")
def inject(data, format_, out, mode, anchor, tell_classes, colours, tell_kind, tell_jpeg,
           tell_size, tell_position, prevalence, size, margin, window, images_root,
           seed):  # fmt: skip
    """Write a poisoned copy of a dataset in the same format, plus tells.json.

    The copy is the control experiment: train on it and audit, and the audit must find the
    tell. Images are written as lossless PNG (JPEG would smear a solid tell). On detection
    data (voc, coco, csv) the tells go into each object's crop by default, which is what a
    `--mode crop` audit reads; pass the same --size/--margin/--window to the audit.
    """
    from leakaudit.data.inject import build_tell_spec, inject_dataset

    format_ = format_ or detect_format(data)
    if anchor is not None:
        mode = mode or ("crop" if anchor == "object" else "image")
    mode = mode or ("crop" if _has_boxes(format_) else "image")
    if not _has_boxes(format_) and mode == "crop":
        raise click.BadParameter(f"{format_} data has no boxes to crop: use --mode image")
    extra = {"images_root": images_root} if images_root else {}
    spec = build_tell_spec(data, format_, colours=dict(class_colour(c) for c in colours),
                           size=tell_size,
                           position=parse_position(tell_position), prevalence=prevalence,
                           kind=tell_kind, jpeg_quality=tell_jpeg, **extra)  # fmt: skip
    check_out_dir(out)
    res = inject_dataset(data, format_, out, spec, seed,
                         anchor="object" if mode == "crop" else "image",
                         poison_classes=csv_values(tell_classes), size=size, margin=margin,
                         window=window, **extra)  # fmt: skip
    click.echo(f"wrote {res.n_images} images ({res.n_tells} tells: {res.tells_per_class}) to "
               f"{res.out_dir}")  # fmt: skip
    for p in res.problems:
        click.echo(f"data problem: {p.item}: {p.problem} ({p.action})", err=True)
    if res.n_tells == 0:
        click.echo(
            "Warning: no tell was planted (check --tell-classes and --prevalence).", err=True
        )
    click.echo(f"tells:   {res.tells_path}")
    crop = f" --mode crop --size {size or 64}" + (
        f" --window {window:g}" if window else f" --margin {margin:g}"
    )
    click.echo(f"read it: --data {res.read_path} --format {res.format}"
               + (crop if mode == "crop" else ""))  # fmt: skip


@click.command()
@click.option("--data", required=True, help="Detection dataset (VOC root, COCO json, CSV file).")
@click.option(
    "--format",
    "format_",
    type=RegistryChoice(lambda: dataset_format_names(boxes=True)),
    default=None,
    help="Dataset format [default: detected from --data].",
)
@click.option("--out", required=True, help="New folder: images/<class>/, masks/<class>/.")
@click.option("--size", type=SIDE, default=64, show_default=True, help="Crop side in pixels.")
@click.option("--margin", type=MARGIN, default=0.5, show_default=True, help=MARGIN_HELP)
@click.option("--window", type=WINDOW, default=None, help=WINDOW_HELP)
@click.option("--classes", default=None, help="Comma-separated class names (and their order).")
@click.option("--max-per-class", type=POSITIVE, default=None, help="Cap crops per class (seeded).")
@click.option("--images-root", default=None, help="COCO/CSV: folder holding the images.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for --max-per-class.")
@click.option(
    "--skip-unknown",
    is_flag=True,
    help="Drop objects of classes not in --classes (counted) instead of stopping.",
)
def crops(data, format_, out, size, margin, window, classes, max_per_class, images_root, seed,
          skip_unknown):  # fmt: skip
    """Write every annotated object as its own image: an ImageFolder with region masks.

    The crops are exactly the samples `--mode crop` reads. Written out, they can be inspected,
    trained on elsewhere, or poisoned per crop with `leakaudit inject --format imagefolder`
    (a tell drawn into the full image also lands in neighbouring objects' crops).
    Read them back with `--format imagefolder --data OUT/images --masks OUT/masks`.
    """
    from leakaudit.data.export import export_samples
    from leakaudit.data.formats import read_dataset

    format_ = format_ or detect_format(data)
    if not _has_boxes(format_):
        raise click.BadParameter(f"crops needs boxes: --data must be {BOXED.replace('/', ', ')}")
    kw: dict = {"mode": "crop", "size": size, "margin": margin, "window": window, "seed": seed}
    kw.update(classes=csv_values(classes), max_per_class=max_per_class, skip_unknown=skip_unknown)
    if images_root:
        kw["images_root"] = images_root
    check_out_dir(out)
    ds = read_dataset(data, format_, **kw)
    for p in ds.problems:
        click.echo(f"data problem: {p.item}: {p.problem} ({p.action})", err=True)
    source = {"data": str(data), "format": format_, "size": size, "margin": margin,
              "window": window, "seed": seed}  # fmt: skip
    res = export_samples(ds, out, meta=source)
    click.echo(f"wrote {sum(res.counts.values())} crops {res.counts} to {res.images_dir}"
               + (f" ({res.n_tells} tells in tells.json)" if res.n_tells else ""))  # fmt: skip
    click.echo(f"read them: --data {res.images_dir} --format imagefolder --masks {res.masks_dir}")


@click.command("train")
@click.option("--data", required=True, help="Dataset path (folder, VOC root, COCO json, CSV).")
@FORMAT_OPTION
@click.option(
    "--mode",
    type=MODES,
    default="image",
    show_default=True,
    help=f"image: one sample per image; crop: one per annotated object ({BOXED}).",
)
@click.option("--size", type=SIDE, default=64, show_default=True, help="Input side in pixels.")
@click.option("--margin", type=MARGIN, default=0.5, show_default=True, help=MARGIN_HELP)
@click.option("--window", type=WINDOW, default=None, help=WINDOW_HELP)
@click.option("--max-per-class", type=POSITIVE, default=None, help="Cap samples per class.")
@click.option(
    "--arch",
    type=click.Choice(["small_cnn"]),
    default="small_cnn",
    show_default=True,
    help="Bundled architecture to train.",
)
@click.option(
    "--epochs",
    type=POSITIVE,
    default=30,
    show_default=True,
    help="Upper bound; early stopping on a validation split ends sooner.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for split and init.")
@click.option("--out", required=True, help="Checkpoint path (.pt); model_card.json goes beside.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(data, format_, mode, size, margin, window, max_per_class, arch, epochs, seed, out,
              quiet):  # fmt: skip
    """Train a bundled small CNN (seeded, early stopping) and save checkpoint + model card."""
    from leakaudit.models.train_run import train_and_save

    format_ = format_ or detect_format(data)
    if not _has_boxes(format_) and mode == "crop":
        raise click.BadParameter(f"{format_} data has no boxes to crop: use --mode image")
    check_out_dir(Path(out).parent)
    res = train_and_save(data, format_, out, mode=mode, size=size, margin=margin, window=window,
                         max_per_class=max_per_class, arch=arch, epochs=epochs, seed=seed,
                         progress=not quiet)  # fmt: skip
    click.echo(f"trained {arch} on {res.n_samples} samples {res.counts}: validation accuracy "
               f"{res.val_accuracy:.3f}")  # fmt: skip
    click.echo(f"checkpoint: {out}")
    click.echo(f"model card: {res.card}")
