"""Command line: parse options, call the library, print where the results are. Nothing else.

Exit codes: 0 no leak found, 1 leak found, 2 error (bad input, bad options).
"""

from __future__ import annotations

import sys

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
