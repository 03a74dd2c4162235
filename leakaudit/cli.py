"""Command line: parse options, call the library, print where the results are. Nothing else.

Exit codes: 0 no leak found, 1 leak found, 2 error (bad input, bad options).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import click

from leakaudit.cli_types import (
    FORMATS,
    FRACTION,
    LIME_SAMPLES,
    MARGIN,
    MODES,
    POSITIVE,
    SEED,
    SIDE,
    WINDOW,
)
from leakaudit.errors import LeakauditError
from leakaudit.paths import check_out_dir
from leakaudit.tell_kinds import KINDS as TELL_KINDS

JUNIT_HELP = "Also write JUnit XML here: one test case per condition per model (for CI)."


def _command() -> str:
    """The command as typed, for the report's footer and summary.md."""
    from leakaudit.report.command import command_line

    return command_line(click.get_current_context())


def _position(value: str) -> str | tuple[int, int]:
    if "," in value:
        try:
            x, y = (int(v) for v in value.split(","))
        except ValueError as exc:
            raise click.BadParameter(f"expected X,Y integers, got {value!r}") from exc
        return (x, y)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leakaudit")
def main() -> None:
    """leakaudit — audit image classifiers for data leakage (shortcut "tells").

    A tell is anything that lets a model score well for the wrong reason: a coloured sticker on
    every image of one class, a watermark, a ruler, a scanner border. leakaudit explains the
    model over a whole dataset (gradient saliency and LIME), measures how much of the
    attribution lands outside the annotated objects and on known tells, tests what the model
    does when a tell is removed or swapped, and writes a self-contained HTML report plus a
    machine-readable summary.json.

    Start with `leakaudit demo --out out/demo`. Exit codes: 0 no leak found, 1 leak found,
    2 error (one line on stderr; add --debug anywhere for the traceback), 3 inconclusive.
    """


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="out/demo",
    show_default=True,
    help="Folder for report.html, summary.json and run_info.json.",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Seed for data, tells, training and LIME: same seed, same report.",
)
@click.option("--quick", is_flag=True, help="Small configuration (~30 s) for a smoke run.")
@click.option(
    "--tell-size", type=click.IntRange(min=1), default=None, help="Tell side in pixels [10]."
)
@click.option(
    "--tell-position",
    default=None,
    help="top-left | top-right | bottom-left | bottom-right | random | X,Y [top-left].",
)
@click.option(
    "--prevalence",
    type=FRACTION,
    default=None,
    help="Fraction of each class's images that carry the tell [1.0].",
)
@click.option(
    "--lime-samples",
    type=LIME_SAMPLES,
    default=None,
    help="Perturbed samples per image for LIME [500].",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--junit", default=None, help=JUNIT_HELP)
def demo(out_dir, seed, quick, tell_size, tell_position, prevalence, lime_samples, quiet, junit):
    """Plant a tell, train a clean and a poisoned model, audit both, write the report.

    Synthetic shapes (4 classes, cluttered backgrounds, 64×64) get a solid rectangle of a
    class-specific colour. A clean model is trained on the clean images, a poisoned model on
    the poisoned twin; both are explained on the same poisoned evaluation images. Exit code 0
    when the audit finds the poisoned model leaking and the clean one clean (the demo's claim),
    1 otherwise.
    """
    from dataclasses import replace

    from leakaudit.demo import DemoConfig, run_demo
    from leakaudit.report import write_report

    config = DemoConfig.quick(seed) if quick else DemoConfig(seed=seed)
    changes = {
        "tell_size": tell_size,
        "tell_position": _position(tell_position) if tell_position else None,
        "prevalence": prevalence,
        "lime_samples": lime_samples,
    }
    config = replace(config, **{k: v for k, v in changes.items() if v is not None})
    check_out_dir(out_dir)
    result = run_demo(config, progress=not quiet)
    html, summary = write_report(result, out_dir, command=_command(), junit_path=junit)
    for name, audit in result.models.items():
        click.echo(f"{name:>9} model: verdict {audit.verdict.upper():<5} "
                   f"accuracy {audit.accuracy:.3f}")  # fmt: skip
    click.echo(f"report:  {html}")
    click.echo(f"summary: {summary}")
    expected = result.models["poisoned"].verdict == "leak" and (
        result.models["clean"].verdict == "clean"
    )
    sys.exit(0 if expected else 1)


def detect_format(data: str) -> str:
    """The dataset format of ``data`` (VOC root, COCO json, CSV, image folder)."""
    from leakaudit.data.formats import detect_format as detect

    return detect(data)


def _csv(value: str | None, cast=str) -> list | None:
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"cannot parse {value!r}") from exc


def _colour(value: str) -> tuple[float, float, float]:
    """'#ff0000', 'ff0000' or '255,0,0' → RGB floats in [0, 1]."""
    v = value.strip().lstrip("#")
    try:
        if "," in v:
            parts = [float(x) for x in v.split(",")]
            if len(parts) != 3:
                raise ValueError
            rgb = tuple(p / 255 if max(parts) > 1 else p for p in parts)
        else:
            if len(v) != 6:
                raise ValueError
            rgb = tuple(int(v[i : i + 2], 16) / 255 for i in (0, 2, 4))
    except ValueError as exc:
        raise click.BadParameter(f"colour {value!r}: use #rrggbb or R,G,B") from exc
    return rgb  # type: ignore[return-value]


MARGIN_HELP = (
    "Crop mode: context added on EACH side of a box, as a fraction of the box's side "
    "(0.5 gives a crop twice the box)."
)
WINDOW_HELP = (
    "Crop mode: one fixed crop side in image pixels for every object (replaces --margin), so all "
    "crops share one scale [default: proportional]."
)


_AUDIT_OPTIONS = [
    click.option("--data", help="Dataset path (folder, VOC root, COCO json, or CSV file)."),
    click.option(
        "--format",
        "format_",
        type=FORMATS,
        default=None,
        help="Dataset format [default: detected from --data].",
    ),
    click.option(
        "--mode",
        type=MODES,
        default=None,
        help="image: one sample per image; crop: one sample per annotated object "
        "(detection datasets) [default: image].",
    ),
    click.option(
        "--size",
        type=SIDE,
        default=None,
        help="Resize samples to SIZE×SIZE [default: the model card's size, else 64 in crop mode].",
    ),
    click.option(
        "--margin",
        type=click.FloatRange(min=0.0),
        default=None,
        help=MARGIN_HELP + " [default: 0.5]",
    ),
    click.option(
        "--window",
        type=click.FloatRange(min=1.0),
        default=None,
        help=WINDOW_HELP,
    ),
    click.option(
        "--classes", default=None, help="Comma-separated class names in the model's output order."
    ),
    click.option(
        "--max-per-class", type=POSITIVE, default=None, help="Cap samples per class (seeded)."
    ),
    click.option("--images-root", default=None, help="COCO/CSV: folder holding the images."),
    click.option(
        "--skip-unknown",
        is_flag=True,
        default=None,
        help="Drop objects of classes not in --classes (counted) instead of stopping.",
    ),
    click.option("--masks", default=None, help="imagefolder: parallel tree of region-mask PNGs."),
    click.option(
        "--tells",
        default=None,
        help="tells.json of an injected copy (found automatically beside the data).",
    ),
    click.option(
        "--methods",
        default=None,
        help="Comma-separated attribution methods [default: saliency,lime].",
    ),
    click.option(
        "--lime-samples", type=LIME_SAMPLES, default=None, help="LIME samples per image [500]."
    ),
    click.option(
        "--limit",
        type=POSITIVE,
        default=None,
        help="Audit at most N images, stratified: every class keeps at least one while N ≥ the "
        "number of classes.",
    ),
    click.option("--seed", type=SEED, default=None, help="Seed for every random choice [0]."),
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML file with any of these options (CLI flags win).",
    ),
    click.option("--out", default=None, help="Output folder [out/audit]."),
    click.option(
        "--cache-dir",
        default=None,
        help="Attribution cache, reused across runs [default: $LEAKAUDIT_CACHE_DIR, else "
        "~/.cache/leakaudit].",
    ),
    click.option(
        "--no-cache",
        "no_cache",
        is_flag=True,
        default=None,
        help="Neither read nor write the attribution cache.",
    ),
    click.option(
        "--preprocess",
        type=click.Choice(["imagenet", "none"]),
        default=None,
        help="Normalisation preset the model was trained with: imagenet = mean (0.485, 0.456, "
        "0.406), std (0.229, 0.224, 0.225) [default: the model card's, else none].",
    ),
    click.option(
        "--mean",
        default=None,
        help="Per-channel mean subtracted after scaling pixels to [0, 1], as R,G,B.",
    ),
    click.option(
        "--std",
        default=None,
        help="Per-channel std divided by after subtracting --mean, as R,G,B.",
    ),
    click.option(
        "--channel-order",
        type=click.Choice(["RGB", "BGR"]),
        default=None,
        help="Channel order the model expects [default: RGB].",
    ),
    click.option(
        "--insight",
        is_flag=True,
        default=None,
        help="Also visualise each class (activation maximisation) and measure how much of it "
        "paints a strong suspected tell; written to summary.json (informational).",
    ),
    click.option(
        "--force-classes",
        is_flag=True,
        default=None,
        help="Accept a --classes order that contradicts the model card's.",
    ),
    click.option(
        "--fail-on",
        type=click.Choice(["fail", "warn", "inconclusive"]),
        default="fail",
        show_default=True,
        help="What makes the exit code 1: a failed condition (fail); also any warning (warn); "
        "also an inconclusive verdict, which otherwise exits 3 (inconclusive).",
    ),
    click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda", "mps"]),
        default=None,
        help="Where the model runs [default: auto = CUDA when available, else CPU].",
    ),
    click.option(
        "--amp",
        is_flag=True,
        default=None,
        help="Mixed precision (autocast) for the forward passes of LIME and occlusion.",
    ),
    click.option(
        "--budget",
        default=None,
        help="Time budget, e.g. 15m: LIME, occlusion, IG and SmoothGrad explain a stratified "
        "sample that fits (reported with 95 % CIs); cheap methods cover every image "
        "[default: none, every image].",
    ),
    click.option(
        "--layer", default=None, help="Grad-CAM layer name [default: the last conv layer]."
    ),
    click.option("--quiet", is_flag=True, help="No progress bars."),
    click.option("--junit", default=None, help=JUNIT_HELP),
]


def audit_options(f):
    """The options `audit` and `compare` share: data, methods, limits, config, output."""
    for option in reversed(_AUDIT_OPTIONS):
        f = option(f)
    return f


@main.command()
@audit_options
@click.option("--model", default=None, help="TorchScript file or state_dict checkpoint.")
@click.option(
    "--arch",
    default=None,
    help="For a state_dict: module:Class, file.py:Class or a bundled name (small_cnn).",
)
@click.option(
    "--train",
    is_flag=True,
    default=None,
    help="Train a bundled model on part of the data and audit the held-out rest.",
)
def audit(config_path, quiet, format_, classes, methods, train, no_cache, fail_on, **cli):
    """Audit a model on your dataset; exit 0 = no leak found, 1 = leak found, 2 = error,
    3 = inconclusive.

    Explains every image (saliency, LIME), scores attribution outside the annotated objects
    and on known tells (tells.json written by `leakaudit inject`), looks for suspected tells
    without annotations and tests them by removing and swapping them, runs a randomisation
    sanity check per method and a region-ablation test, and writes report.html +
    summary.json into --out.
    """
    from leakaudit.pipeline import AuditOptions, run_audit
    from leakaudit.report import write_report

    junit = cli.pop("junit", None)
    _shared_options(cli, format_, classes, methods, no_cache)
    cli["train"] = train
    opts = AuditOptions.merged(config_path, cli)
    check_out_dir(opts.out)
    result = run_audit(opts, progress=not quiet)
    html, summary = write_report(result, opts.out, command=_command(), junit_path=junit)
    model = result.models["model"]
    problems = len(result.eval_data.problems)
    click.echo(verdict_line(model.verdict, model.conditions))
    click.echo(f"  accuracy on the {len(result.eval_data)} audited images "
               f"{model.eval_accuracy:.3f}; {problems} data problem(s) in the report")  # fmt: skip
    _echo_conditions(model.conditions)
    _echo_warnings(result.notes)
    click.echo(f"report:  {html}")
    click.echo(f"summary: {summary}")
    _echo_cache(opts)
    sys.exit(exit_code([model.verdict], [model.conditions], fail_on))


def _shared_options(cli: dict, format_, classes, methods, no_cache) -> None:
    """CLI spellings → AuditOptions fields (lists split, flags mapped)."""
    cli.update(format=format_, classes=_csv(classes), methods=_csv(methods),
               cache=False if no_cache else None, mean=_triple(cli.get("mean"), "--mean"),
               std=_triple(cli.get("std"), "--std"))  # fmt: skip
    if methods is not None and not cli["methods"]:
        raise click.BadParameter("--methods needs at least one method, e.g. saliency,lime")


def _triple(value: str | None, flag: str) -> list[float] | None:
    if value is None:
        return None
    parts = _csv(value, float)
    if len(parts) != 3:
        raise click.BadParameter(f"{flag} needs three numbers R,G,B, got {value!r}")
    return parts


def verdict_line(verdict: str, conditions) -> str:
    """The verdict and how much it rests on: "CLEAN — no leak found; 1 of 7 conditions
    measurable"; a caveat when nothing that could fail was measured."""
    measured = [c for c in conditions if c.status != "N/A"]
    can_fail = [c for c in measured if c.fail != float("inf")]
    failed = [c for c in measured if c.status == "FAIL"]
    words = {"leak": "leak found", "clean": "no leak found", "inconclusive": "nothing decisive"}
    line = (f"verdict: {verdict.upper()} — {words.get(verdict, verdict)}; "
            f"{len(measured)} of {len(conditions)} conditions measurable")  # fmt: skip
    if failed:
        line += f", {len(failed)} failed"
    if not can_fail:
        line += (" (none of them can fail: without tell annotations and without a strong "
                 "suspected tell, the audit could not test for a leak)")  # fmt: skip
    return line


def exit_code(verdicts: list[str], conditions: list, fail_on: str) -> int:
    """0 no leak found, 1 leak found (or what --fail-on adds), 3 inconclusive."""
    if "leak" in verdicts:
        return 1
    if fail_on == "warn" and any(c.status == "WARN" for cs in conditions for c in cs):
        return 1
    if "inconclusive" in verdicts:
        return 1 if fail_on == "inconclusive" else 3
    return 0


def _echo_conditions(conditions) -> None:
    for c in conditions:
        if c.status in ("FAIL", "WARN"):
            line = f"  {c.status}: {c.name} = {c.value:.3f} (warn ≥ {c.warn:g}"
            line += ")" if c.fail == float("inf") else f", fail ≥ {c.fail:g})"
            click.echo(line)


def _echo_cache(opts) -> None:
    from leakaudit.cache import default_cache_dir

    if opts.cache:
        where = opts.cache_dir or default_cache_dir()
        click.echo(f"cache:   {where} (reused by later runs; --no-cache to skip)", err=True)


def _echo_warnings(notes: list[str]) -> None:
    for note in notes:
        if note.startswith("Warning:"):
            click.echo(note, err=True)


@main.command()
@audit_options
@click.option("--model-a", required=True, help="First model (e.g. the clean or old release).")
@click.option("--model-b", required=True, help="Second model (e.g. the suspect or new release).")
@click.option("--names", default="A,B", show_default=True, help="Names for the two models.")
@click.option(
    "--arch",
    default=None,
    help="For state_dicts: module:Class, file.py:Class or a bundled name (both models).",
)
def compare(config_path, quiet, format_, classes, methods, no_cache, fail_on, model_a, model_b,
            names, **cli):  # fmt: skip
    """Audit two models on the same images and compare them, image by image.

    Prints each model's verdict and writes one report with both side by side plus paired
    differences (A − B) of every score with bootstrap CIs, Cohen's d_z and Wilcoxon p-values.
    Exit code: 1 if either model is judged leaking, 3 if either is inconclusive, else 0;
    2 on error.
    """
    from leakaudit.pipeline import AuditOptions, run_compare
    from leakaudit.report import write_report

    junit = cli.pop("junit", None)
    _shared_options(cli, format_, classes, methods, no_cache)
    pair = _csv(names)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise click.BadParameter("--names needs two different names, e.g. clean,poisoned")
    opts = AuditOptions.merged(config_path, cli, need_model=False)
    check_out_dir(opts.out)
    result = run_compare(opts, model_a, model_b, (pair[0], pair[1]), progress=not quiet)
    html, summary = write_report(result, opts.out, command=_command(), junit_path=junit)
    for name, audit in result.models.items():
        click.echo(f"{name}: {verdict_line(audit.verdict, audit.conditions)}; accuracy "
                   f"{audit.eval_accuracy:.3f}")  # fmt: skip
    for row in result.comparison:
        if row["score"] in ("tell_mass", "outside_mass", "correct") and row["n"]:  # the headline
            click.echo(f"  {row['method']:>9} {row['score']:<13} {pair[0]} − {pair[1]} = "
                       f"{row['mean_diff']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]")  # fmt: skip
    _echo_warnings(result.notes)
    click.echo(f"report:  {html}")
    click.echo(f"summary: {summary}")
    _echo_cache(opts)
    audits = list(result.models.values())
    sys.exit(exit_code([a.verdict for a in audits], [a.conditions for a in audits], fail_on))


@main.command()
@click.option("--data", required=True, help="Dataset to copy (folder, VOC root, COCO json, CSV).")
@click.option(
    "--format",
    "format_",
    type=FORMATS,
    default=None,
    help="Dataset format [default: detected from --data].",
)
@click.option("--out", required=True, help="New (or empty) folder for the poisoned copy.")
@click.option(
    "--mode",
    type=MODES,
    default=None,
    help="The audit mode the copy is for. crop: one tell per annotated object, placed in the "
    "object's crop, so a `--mode crop` audit sees it; image: one tell per image. "
    "[default: crop for voc/coco/csv, image for imagefolder]",
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
    from leakaudit.inject import build_tell_spec, inject_dataset

    format_ = format_ or detect_format(data)
    if anchor is not None:
        mode = mode or ("crop" if anchor == "object" else "image")
    mode = mode or ("image" if format_ == "imagefolder" else "crop")
    if format_ == "imagefolder" and mode == "crop":
        raise click.BadParameter("an image folder has no boxes to crop: use --mode image")
    extra = {"images_root": images_root} if images_root else {}
    spec = build_tell_spec(data, format_, colours=dict(_class_colour(c) for c in colours),
                           size=tell_size,
                           position=_position(tell_position), prevalence=prevalence,
                           kind=tell_kind, jpeg_quality=tell_jpeg, **extra)  # fmt: skip
    check_out_dir(out)
    res = inject_dataset(data, format_, out, spec, seed,
                         anchor="object" if mode == "crop" else "image",
                         poison_classes=_csv(tell_classes), size=size, margin=margin,
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


def _class_colour(item: str) -> tuple[str, tuple[float, float, float]]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"--colour {item!r}: use CLASS=#rrggbb")
    return name, _colour(value)


@main.command()
@click.option("--data", required=True, help="Detection dataset (VOC root, COCO json, CSV file).")
@click.option(
    "--format",
    "format_",
    type=click.Choice(["voc", "coco", "csv"]),
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
def crops(data, format_, out, size, margin, window, classes, max_per_class, images_root, seed):
    """Write every annotated object as its own image: an ImageFolder with region masks.

    The crops are exactly the samples `--mode crop` reads. Written out, they can be inspected,
    trained on elsewhere, or poisoned per crop with `leakaudit inject --format imagefolder`
    (a tell drawn into the full image also lands in neighbouring objects' crops).
    Read them back with `--format imagefolder --data OUT/images --masks OUT/masks`.
    """
    from leakaudit.data.export import export_samples
    from leakaudit.data.formats import read_dataset

    format_ = format_ or detect_format(data)
    if format_ == "imagefolder":
        raise click.BadParameter("crops needs boxes: --data must be voc, coco or csv")
    kw: dict = {"mode": "crop", "size": size, "margin": margin, "window": window, "seed": seed}
    kw.update(classes=_csv(classes), max_per_class=max_per_class)
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


@main.command("train")
@click.option("--data", required=True, help="Dataset path (folder, VOC root, COCO json, CSV).")
@click.option(
    "--format",
    "format_",
    type=FORMATS,
    default=None,
    help="Dataset format [default: detected from --data].",
)
@click.option(
    "--mode",
    type=MODES,
    default="image",
    show_default=True,
    help="image: one sample per image; crop: one per annotated object (voc/coco/csv).",
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
    if format_ == "imagefolder" and mode == "crop":
        raise click.BadParameter("an image folder has no boxes to crop: use --mode image")
    check_out_dir(Path(out).parent)
    res = train_and_save(data, format_, out, mode=mode, size=size, margin=margin, window=window,
                         max_per_class=max_per_class, arch=arch, epochs=epochs, seed=seed,
                         progress=not quiet)  # fmt: skip
    click.echo(f"trained {arch} on {res.n_samples} samples {res.counts}: validation accuracy "
               f"{res.val_accuracy:.3f}")  # fmt: skip
    click.echo(f"checkpoint: {out}")
    click.echo(f"model card: {res.card}")


@main.command()
@click.option("--out", default="out/bench", show_default=True, help="Folder for bench.json.")
@click.option("--quick", is_flag=True, help="Fewer images and samples (about a minute).")
@click.option(
    "--samples",
    type=int,
    default=1000,
    show_default=True,
    help="LIME samples per image for every LIME implementation.",
)
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed for images and LIME.")
@click.option(
    "--arch",
    type=click.Choice(["resnet18", "vit_tiny"]),
    default=None,
    help="Real-size case instead: this bundled architecture at --size (see docs/scale.md).",
)
@click.option(
    "--size",
    type=click.IntRange(16, 1024),
    default=224,
    show_default=True,
    help="With --arch: the model input side for the real-size case.",
)
@click.option(
    "--images",
    type=click.IntRange(1, 64),
    default=3,
    show_default=True,
    help="With --arch: images explained per method in the real-size case.",
)
def bench(out, quick, samples, seed, arch, size, images):
    """Measure speed side by side in one process: raw forward, saliency, our LIME, the lime
    package and captum Lime on the same model, images, segmentation and sample count; prints
    images/s, ratios and fidelity, writes bench.json. With --arch: the real-size case."""
    from leakaudit.bench import run_bench, run_scale_bench

    Path(out).mkdir(parents=True, exist_ok=True)
    if arch:
        path = Path(out) / f"bench_{arch}_{size}.json"
        run_scale_bench(arch, size, n_images=images, seed=seed, quick=quick,
                        pkg_samples=samples, out_json=path)  # fmt: skip
        return
    run_bench(n_samples=samples, seed=seed, quick=quick, out_json=Path(out) / "bench.json")


@main.command()
@click.option(
    "--out", default="out/power", show_default=True, help="Folder for power.md/.json/.svg."
)
@click.option("--sizes", default="4,6,8,10", show_default=True, help="Tell sides in pixels.")
@click.option(
    "--prevalences",
    default="0.5,0.8,1.0",
    show_default=True,
    help="Shares of each class's images that carry the tell.",
)
@click.option(
    "--seeds", default="0,1", show_default=True, help="One clean and one poisoned run per seed."
)
@click.option(
    "--full",
    is_flag=True,
    help="Use the full demo configuration (64 px, 3 000 "
    "images) instead of the quick one (48 px, 1 600 images).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def power(out, sizes, prevalences, seeds, full, quiet):
    """Detection power: plant tells of several sizes and prevalences (random colours and
    positions), train, audit; print detection and false-alarm rates per cell."""
    import json

    from leakaudit.demo import DemoConfig
    from leakaudit.power import format_power_table, run_power

    res = run_power(sizes=tuple(_csv(sizes, int)), prevalences=tuple(_csv(prevalences, float)),
                    seeds=tuple(_csv(seeds, int)), base=DemoConfig() if full else None,
                    progress=not quiet)  # fmt: skip
    Path(out).mkdir(parents=True, exist_ok=True)
    text = format_power_table(res)
    (Path(out) / "power.md").write_text(text + "\n")
    (Path(out) / "power.json").write_text(json.dumps(res.to_json(), indent=2))
    from leakaudit.report.plots import power_heatmap_svg

    cells = res.table().to_dict(orient="records")
    (Path(out) / "power.svg").write_text(power_heatmap_svg(cells) + "\n", encoding="utf-8")
    click.echo(text)


@main.command("report")
@click.argument("result_dir", type=click.Path(file_okay=False))
@click.option("--out", default=None, help="Folder for the re-rendered files [RESULT_DIR].")
@click.option(
    "--format",
    "formats",
    default="html,md",
    show_default=True,
    help="Comma-separated outputs: html (report.html), md (summary.md), junit (junit.xml).",
)
def report_cmd(result_dir, out, formats):
    """Re-render a result folder's reports from its saved files (summary.json, results.npz),
    without the model or the data; the output is byte-identical to the original."""
    from leakaudit.report import FORMATS, render_outputs

    chosen = _csv(formats) or []
    unknown = sorted(set(chosen) - set(FORMATS))
    if unknown or not chosen:
        raise click.BadParameter(f"--format: choose from {', '.join(FORMATS)}, got {formats!r}")
    for kind, path in render_outputs(result_dir, out, chosen).items():
        click.echo(f"{kind}: {path}")


from leakaudit.insight.cli import insight as _insight  # noqa: E402

main.add_command(_insight)


def run(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 no leak, 1 leak found, 2 any error. No exception may ever exit 1.

    Errors are one line on stderr. ``--debug`` (anywhere on the command line) re-raises
    unexpected exceptions with their traceback instead, still exiting 2.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        main(args=args, prog_name="leakaudit", standalone_mode=False)
    except SystemExit as exc:  # our own sys.exit(0|1|2|3) from a command
        code = exc.code
        sys.exit(0 if code is None else code if isinstance(code, int) else 2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        sys.exit(2)
    except LeakauditError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except MemoryError:
        click.echo(
            "error: out of memory (try --limit, a smaller --size or fewer methods)", err=True
        )
        sys.exit(2)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            click.echo(
                f"error: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
                "(run with --debug for the traceback)",
                err=True,
            )
        sys.exit(2)
    sys.exit(0)


def _one_line(text: str, limit: int = 400) -> str:
    """First line of a message, shortened: errors are one line on the terminal."""
    line = text.strip().splitlines()[0] if text.strip() else "(no message)"
    return line if len(line) <= limit else line[: limit - 1] + "…"


if __name__ == "__main__":
    run()
