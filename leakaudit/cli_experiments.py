"""Commands around the audit: ``demo`` (the planted-tell story), ``bench`` (speed), ``power``
(detection power) and ``report`` (re-render saved results). Parse, call the library, print."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from leakaudit.cli_types import (
    FRACTION,
    JUNIT_HELP,
    LIME_SAMPLES,
    SEED,
    command_text,
    csv_values,
    parse_position,
)
from leakaudit.explain.lime import LIME_SAMPLES as LIME_DEFAULT
from leakaudit.paths import check_out_dir
from leakaudit.report.outputs import DEFAULT_OUTPUTS, OUTPUT_FORMATS, formats_help


@click.command()
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
    help=f"Perturbed samples per image for LIME [{LIME_DEFAULT}].",
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

    from leakaudit.experiments.demo import DemoConfig, run_demo
    from leakaudit.report import write_report
    from leakaudit.report.outputs import check_report_targets

    config = DemoConfig.quick(seed) if quick else DemoConfig(seed=seed)
    changes = {
        "tell_size": tell_size,
        "tell_position": parse_position(tell_position) if tell_position else None,
        "prevalence": prevalence,
        "lime_samples": lime_samples,
    }
    config = replace(config, **{k: v for k, v in changes.items() if v is not None})
    check_out_dir(out_dir)
    check_report_targets(out_dir, junit)
    result = run_demo(config, progress=not quiet)
    html, summary = write_report(result, out_dir, command=command_text(), junit_path=junit)
    for name, audit in result.models.items():
        click.echo(f"{name:>9} model: verdict {audit.verdict.upper():<5} "
                   f"accuracy {audit.accuracy:.3f}")  # fmt: skip
    click.echo(f"report:  {html}")
    click.echo(f"summary: {summary}")
    expected = result.models["poisoned"].verdict == "leak" and (
        result.models["clean"].verdict == "clean"
    )
    sys.exit(0 if expected else 1)


@click.command()
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
@click.option(
    "--engines",
    default=None,
    help="Instead: the same audit batches on these engines, e.g. local,ray (throughput, "
    "per-image cost, equal scores); with --arch/--size/--images [default: small_cnn, 64 px].",
)
def bench(out, quick, samples, seed, arch, size, images, engines):
    """Measure speed side by side in one process: raw forward, saliency, our LIME, the lime
    package and captum Lime on the same model, images, segmentation and sample count; prints
    images/s, ratios and fidelity, writes bench.json. With --arch: the real-size case."""
    from leakaudit.experiments.bench import run_bench
    from leakaudit.experiments.bench_scale import run_scale_bench

    Path(out).mkdir(parents=True, exist_ok=True)
    if engines:
        from leakaudit.experiments.bench_engines import run_engine_bench

        big = {"arch": arch, "size": size} if arch else {}
        run_engine_bench(engines.split(","), n_images=images if arch else 16, seed=seed,
                         lime_samples=samples if samples != 1000 else LIME_DEFAULT,
                         out_json=Path(out) / "bench_engines.json", **big)  # fmt: skip
        return
    if arch:
        path = Path(out) / f"bench_{arch}_{size}.json"
        run_scale_bench(arch, size, n_images=images, seed=seed, quick=quick,
                        pkg_samples=samples, out_json=path)  # fmt: skip
        return
    run_bench(n_samples=samples, seed=seed, quick=quick, out_json=Path(out) / "bench.json")


@click.command()
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
    from leakaudit.experiments.demo import DemoConfig
    from leakaudit.experiments.power import run_power, write_power

    res = run_power(sizes=tuple(csv_values(sizes, int)),
                    prevalences=tuple(csv_values(prevalences, float)),
                    seeds=tuple(csv_values(seeds, int)), base=DemoConfig() if full else None,
                    progress=not quiet)  # fmt: skip
    text = write_power(res, out)
    click.echo(text)


@click.command("report")
@click.argument("result_dir", type=click.Path(file_okay=False))
@click.option("--out", default=None, help="Folder for the re-rendered files [RESULT_DIR].")
@click.option(
    "--format",
    "formats",
    default=",".join(DEFAULT_OUTPUTS),
    show_default=True,
    help=f"Comma-separated outputs: {formats_help()}.",
)
def report_cmd(result_dir, out, formats):
    """Re-render a result folder's reports from its saved files (summary.json, results.npz),
    without the model or the data; the output is byte-identical to the original."""
    from leakaudit.report import render_outputs

    chosen = csv_values(formats) or []
    unknown = sorted(set(chosen) - set(OUTPUT_FORMATS))
    if unknown or not chosen:
        known = ", ".join(OUTPUT_FORMATS)
        raise click.BadParameter(f"--format: choose from {known}, got {formats!r}")
    for kind, path in render_outputs(result_dir, out, chosen).items():
        click.echo(f"{kind}: {path}")
