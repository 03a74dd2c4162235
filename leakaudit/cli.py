"""Command line: parse options, call the library, print where the results are. Nothing else.

Exit codes: 0 no leak found, 1 leak found, 2 error (bad input, bad options).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from leakaudit.errors import LeakauditError


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

    Start with `leakaudit demo --out out/demo`.
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
    type=int,
    default=0,
    show_default=True,
    help="Seed for data, tells, training and LIME: same seed, same report.",
)
@click.option("--quick", is_flag=True, help="Small configuration (~30 s) for a smoke run.")
@click.option("--tell-size", type=int, default=None, help="Tell side in pixels [default: 10].")
@click.option(
    "--tell-position",
    default=None,
    help="top-left | top-right | bottom-left | bottom-right | random | X,Y [default: top-left].",
)
@click.option(
    "--prevalence",
    type=float,
    default=None,
    help="Fraction of each class's images that carry the tell [default: 1.0].",
)
@click.option(
    "--lime-samples",
    type=int,
    default=None,
    help="Perturbed samples per image for LIME [default: 500].",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo(out_dir, seed, quick, tell_size, tell_position, prevalence, lime_samples, quiet):
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
    result = run_demo(config, progress=not quiet)
    html, summary = write_report(result, out_dir)
    for name, audit in result.models.items():
        click.echo(f"{name:>9} model: verdict {audit.verdict.upper():<5} "
                   f"accuracy {audit.accuracy:.3f}")  # fmt: skip
    click.echo(f"report:  {html}")
    click.echo(f"summary: {summary}")
    expected = result.models["poisoned"].verdict == "leak" and (
        result.models["clean"].verdict == "clean"
    )
    sys.exit(0 if expected else 1)


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


FORMATS = click.Choice(["imagefolder", "voc", "coco", "csv"])
MARGIN_HELP = "Crop mode: context around each box, as a fraction of its size."
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
        help="Dataset format [default: imagefolder].",
    ),
    click.option(
        "--mode",
        type=click.Choice(["image", "crop"]),
        default=None,
        help="image: one sample per image; crop: one sample per annotated object "
        "(detection datasets) [default: image].",
    ),
    click.option(
        "--size",
        type=int,
        default=None,
        help="Resize samples to SIZE×SIZE [default: the model card's size, else 64 in crop mode].",
    ),
    click.option(
        "--margin",
        type=float,
        default=None,
        help="Crop mode: context around each box, as a fraction of its size [0.5].",
    ),
    click.option(
        "--window",
        type=float,
        default=None,
        help=WINDOW_HELP,
    ),
    click.option(
        "--classes", default=None, help="Comma-separated class names in the model's output order."
    ),
    click.option("--max-per-class", type=int, default=None, help="Cap samples per class (seeded)."),
    click.option("--images-root", default=None, help="COCO/CSV: folder holding the images."),
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
    click.option("--lime-samples", type=int, default=None, help="LIME samples per image [500]."),
    click.option("--limit", type=int, default=None, help="Audit at most N images (stratified)."),
    click.option("--seed", type=int, default=None, help="Seed for every random choice [0]."),
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML file with any of these options (CLI flags win).",
    ),
    click.option("--out", default=None, help="Output folder [out/audit]."),
    click.option("--cache-dir", default=None, help="Attribution cache [.leakaudit-cache]."),
    click.option(
        "--no-cache",
        "no_cache",
        is_flag=True,
        default=None,
        help="Neither read nor write the attribution cache.",
    ),
    click.option("--quiet", is_flag=True, help="No progress bars."),
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
def audit(config_path, quiet, format_, classes, methods, train, no_cache, **cli):
    """Audit a model on your dataset; exit 0 = no leak found, 1 = leak found, 2 = error.

    Explains every image (saliency, LIME), scores attribution outside the annotated objects
    and on known tells (tells.json written by `leakaudit inject`), looks for suspected tells
    without annotations and tests them by removing and swapping them, runs a randomisation
    sanity check per method and a region-ablation test, and writes report.html +
    summary.json into --out.
    """
    from leakaudit.pipeline import AuditOptions, run_audit
    from leakaudit.report import write_report

    cli.update(format=format_, classes=_csv(classes), methods=_csv(methods), train=train,
               cache=False if no_cache else None)  # fmt: skip
    opts = AuditOptions.merged(config_path, cli)
    result = run_audit(opts, progress=not quiet)
    html, summary = write_report(result, opts.out)
    model = result.models["model"]
    problems = len(result.eval_data.problems)
    click.echo(f"verdict: {model.verdict.upper()}  (accuracy on audited images "
               f"{model.eval_accuracy:.3f}; {len(result.eval_data)} images; "
               f"{problems} data problem(s) listed in the report)")  # fmt: skip
    for c in model.conditions:
        if c.status in ("FAIL", "WARN"):
            click.echo(f"  {c.status}: {c.name} = {c.value:.3f} (fail ≥ {c.fail:g})")
    _echo_warnings(result.notes)
    click.echo(f"report:  {html}")
    click.echo(f"summary: {summary}")
    sys.exit(1 if model.verdict == "leak" else 0)


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
def compare(config_path, quiet, format_, classes, methods, no_cache, model_a, model_b, names,
            **cli):  # fmt: skip
    """Audit two models on the same images and compare them, image by image.

    Prints each model's verdict and writes one report with both side by side plus paired
    differences (A − B) of every score with bootstrap CIs, Cohen's d_z and Wilcoxon p-values.
    Exit code: 1 if either model is judged leaking, else 0; 2 on error.
    """
    from leakaudit.pipeline import AuditOptions, run_compare
    from leakaudit.report import write_report

    cli.update(format=format_, classes=_csv(classes), methods=_csv(methods),
               cache=False if no_cache else None)  # fmt: skip
    pair = _csv(names)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise click.BadParameter("--names needs two different names, e.g. clean,poisoned")
    opts = AuditOptions.merged(config_path, cli, need_model=False)
    result = run_compare(opts, model_a, model_b, (pair[0], pair[1]), progress=not quiet)
    html, summary = write_report(result, opts.out)
    for name, audit in result.models.items():
        click.echo(f"{name:>10}: verdict {audit.verdict.upper():<5} accuracy "
                   f"{audit.eval_accuracy:.3f}")  # fmt: skip
    for row in result.comparison:
        if row["score"] in ("tell_mass", "outside_mass", "correct") and row["n"]:
            click.echo(f"  {row['method']:>9} {row['score']:<13} {pair[0]} − {pair[1]} = "
                       f"{row['mean_diff']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]")  # fmt: skip
    _echo_warnings(result.notes)
    click.echo(f"report:  {html}")
    click.echo(f"summary: {summary}")
    sys.exit(1 if any(a.verdict == "leak" for a in result.models.values()) else 0)


@main.command()
@click.option("--data", required=True, help="Dataset to copy (any supported format).")
@click.option("--format", "format_", type=FORMATS, default="imagefolder", show_default=True)
@click.option("--out", required=True, help="New folder for the poisoned copy.")
@click.option(
    "--colour",
    "colours",
    multiple=True,
    help="CLASS=#rrggbb (repeatable); classes without one get the default palette.",
)
@click.option("--classes", default=None, help="Only poison these classes (comma-separated).")
@click.option(
    "--size",
    "tell_size",
    type=int,
    default=10,
    show_default=True,
    help="Tell side in pixels (with --anchor object: in crop pixels).",
)
@click.option(
    "--position",
    default="top-left",
    show_default=True,
    help="top-left | top-right | bottom-left | bottom-right | random | X,Y",
)
@click.option(
    "--prevalence",
    type=float,
    default=1.0,
    show_default=True,
    help="Fraction of each poisoned class's images that get the tell.",
)
@click.option(
    "--anchor",
    type=click.Choice(["image", "object"]),
    default="image",
    show_default=True,
    help="Place the tell in the image, or at each annotated object's crop (for crop-mode audits).",
)
@click.option(
    "--crop-size",
    type=int,
    default=None,
    help="With --anchor object: crop side the audit will use [64].",
)
@click.option("--margin", type=float, default=0.5, show_default=True, help=MARGIN_HELP)
@click.option("--window", type=float, default=None, help=WINDOW_HELP)
@click.option("--images-root", default=None, help="COCO/CSV: folder holding the images.")
@click.option("--seed", type=int, default=0, show_default=True)
def inject(data, format_, out, colours, classes, tell_size, position, prevalence, anchor,
           crop_size, margin, window, images_root, seed):  # fmt: skip
    """Write a poisoned copy of a dataset in the same format, plus tells.json.

    The copy is the control experiment: train on it and audit, and the audit must find the
    tell. Images are written as lossless PNG (JPEG would smear a solid tell).
    """
    from leakaudit.data.formats import read_dataset
    from leakaudit.inject import inject_dataset
    from leakaudit.tells import PALETTE, TellSpec

    extra = {"images_root": images_root} if images_root else {}
    if format_ == "imagefolder":
        kw = {}
    else:  # detection formats: class names as the audit will see them
        kw = (
            {"mode": "crop", "margin": margin, "window": window}
            if anchor == "object"
            else {"label_rule": "majority"}
        )
    names = read_dataset(data, format_, **kw, **extra).class_names
    colour_map = {}
    for item in colours:
        name, _, value = item.partition("=")
        if name not in names:
            raise click.BadParameter(f"--colour: unknown class {name!r}; classes: {names}")
        colour_map[names.index(name)] = _colour(value)
    full = (
        {k: colour_map.get(k, PALETTE[k % len(PALETTE)]) for k in range(len(names))}
        if colour_map
        else None
    )
    spec = TellSpec(size=tell_size, position=_position(position), prevalence=prevalence,
                    colours=full)  # fmt: skip
    res = inject_dataset(data, format_, out, spec, seed, anchor=anchor,
                         poison_classes=_csv(classes), size=crop_size, margin=margin,
                         window=window, **extra)  # fmt: skip
    click.echo(f"wrote {res.n_images} images ({res.n_tells} tells: {res.tells_per_class}) to "
               f"{res.out_dir}")  # fmt: skip
    click.echo(f"tells:   {res.tells_path}")
    click.echo(f"read it: --data {res.read_path} --format {res.format}")


@main.command()
@click.option("--data", required=True, help="Detection dataset (VOC root, COCO json, CSV file).")
@click.option("--format", "format_", type=click.Choice(["voc", "coco", "csv"]), required=True)
@click.option("--out", required=True, help="New folder: images/<class>/, masks/<class>/.")
@click.option("--size", type=int, default=64, show_default=True, help="Crop side in pixels.")
@click.option("--margin", type=float, default=0.5, show_default=True, help=MARGIN_HELP)
@click.option("--window", type=float, default=None, help=WINDOW_HELP)
@click.option("--classes", default=None, help="Comma-separated class names (and their order).")
@click.option("--max-per-class", type=int, default=None, help="Cap crops per class (seeded).")
@click.option("--images-root", default=None, help="COCO/CSV: folder holding the images.")
@click.option("--seed", type=int, default=0, show_default=True)
def crops(data, format_, out, size, margin, window, classes, max_per_class, images_root, seed):
    """Write every annotated object as its own image: an ImageFolder with region masks.

    The crops are exactly the samples `--mode crop` reads. Written out, they can be inspected,
    trained on elsewhere, or poisoned per crop with `leakaudit inject --format imagefolder`
    (a tell drawn into the full image also lands in neighbouring objects' crops).
    Read them back with `--format imagefolder --data OUT/images --masks OUT/masks`.
    """
    from leakaudit.data.export import export_samples
    from leakaudit.data.formats import read_dataset

    kw: dict = {"mode": "crop", "size": size, "margin": margin, "window": window, "seed": seed}
    kw.update(classes=_csv(classes), max_per_class=max_per_class)
    if images_root:
        kw["images_root"] = images_root
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
@click.option("--data", required=True, help="Dataset path.")
@click.option("--format", "format_", type=FORMATS, default="imagefolder", show_default=True)
@click.option("--mode", type=click.Choice(["image", "crop"]), default="image", show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="Input side in pixels.")
@click.option("--margin", type=float, default=0.5, show_default=True, help=MARGIN_HELP)
@click.option("--window", type=float, default=None, help=WINDOW_HELP)
@click.option("--max-per-class", type=int, default=None)
@click.option("--arch", default="small_cnn", show_default=True)
@click.option(
    "--epochs",
    type=int,
    default=30,
    show_default=True,
    help="Upper bound; early stopping on a validation split ends sooner.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, help="Checkpoint path (.pt); model_card.json goes beside.")
@click.option("--quiet", is_flag=True)
def train_cmd(data, format_, mode, size, margin, window, max_per_class, arch, epochs, seed, out,
              quiet):  # fmt: skip
    """Train a bundled small CNN (seeded, early stopping) and save checkpoint + model card."""
    from leakaudit.data.formats import read_dataset
    from leakaudit.models.fit import fit
    from leakaudit.models.load import save_checkpoint

    kw: dict = {"size": size, "seed": seed}
    if format_ != "imagefolder":
        kw.update(mode=mode, margin=margin, window=window)
    if max_per_class:
        kw["max_per_class"] = max_per_class
    ds = read_dataset(data, format_, **kw)
    model, report = fit(ds, arch=arch, seed=seed, epochs=epochs, progress=not quiet)
    prep: dict = {"input_size": size}
    if format_ != "imagefolder" and mode == "crop":  # audits must cut the same crops
        prep["crop"] = {"margin": margin, "window": window}
    card = save_checkpoint(model, arch, report.get("arch_kwargs", {}), ds.class_names,
                           prep, report, out, seed=seed)  # fmt: skip
    click.echo(f"trained {arch} on {len(ds)} samples {ds.counts()}: validation accuracy "
               f"{report.get('val_accuracy', float('nan')):.3f}")  # fmt: skip
    click.echo(f"checkpoint: {out}")
    click.echo(f"model card: {card}")


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
@click.option("--seed", type=int, default=0, show_default=True)
def bench(out, quick, samples, seed):
    """Measure speed side by side in one process: raw forward, saliency, our LIME, the lime
    package and captum Lime on the same model, images, segmentation and sample count; prints
    images/s, ratios and fidelity, writes bench.json."""
    from leakaudit.bench import run_bench

    Path(out).mkdir(parents=True, exist_ok=True)
    run_bench(n_samples=samples, seed=seed, quick=quick, out_json=Path(out) / "bench.json")


@main.command()
@click.option("--out", default="out/power", show_default=True)
@click.option("--sizes", default="4,6,8,10", show_default=True, help="Tell sides in pixels.")
@click.option("--prevalences", default="0.5,0.8,1.0", show_default=True)
@click.option("--seeds", default="0,1", show_default=True)
@click.option(
    "--full",
    is_flag=True,
    help="Use the full demo configuration (64 px, 3 000 "
    "images) instead of the quick one (48 px, 1 600 images).",
)
@click.option("--quiet", is_flag=True)
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
    click.echo(text)


def run() -> None:
    """Entry point wrapper: user errors become one line on stderr and exit code 2."""
    try:
        main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(2)
    except LeakauditError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except FileNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
