"""Command line: parse options, call the library, print where the results are. Nothing else.

This module holds the group, ``audit`` and ``compare`` (they share one option list) and the
error handling of ``run``; the other commands live in ``cli_data.py`` (inject, crops, train)
and ``cli_experiments.py`` (demo, bench, power, report).

Exit codes: 0 no leak found, 1 leak found, 2 error (bad input, bad options).
"""

from __future__ import annotations

import sys
import traceback

import click

from leakaudit.auditing.verdict import exit_code, verdict_line
from leakaudit.cli_data import crops, inject, train_cmd
from leakaudit.cli_experiments import bench, demo, power, report_cmd
from leakaudit.cli_types import (
    FORMAT_OPTION,
    JUNIT_HELP,
    LIME_SAMPLES,
    MARGIN_HELP,
    MODES,
    POSITIVE,
    SEED,
    SIDE,
    WINDOW_HELP,
    command_text,
    csv_values,
)
from leakaudit.errors import LeakauditError
from leakaudit.paths import check_out_dir
from leakaudit.textsafe import terminal_text


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


_AUDIT_OPTIONS = [
    click.option("--data", help="Dataset path (folder, VOC root, COCO json, or CSV file)."),
    FORMAT_OPTION,
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
        help="Also visualise each class (activation maximisation): the pictures go next to the "
        "suspected tells in the report, measured against the strong ones in summary.json "
        "(informational), and each model's full insight page is written beside the report.",
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
        help="Mixed precision (autocast) for the forward passes of LIME and occlusion: float16 "
        "on a GPU, bfloat16 on the CPU (3× faster with AMX, but LIME's ranking agrees less "
        "with full precision there; docs/scale.md).",
    ),
    click.option(
        "--budget",
        default=None,
        help="Time budget per model audited, e.g. 15m (compare: each model gets it): cheap "
        "methods cover every image, the other checks run, then LIME, occlusion, IG and "
        "SmoothGrad explain a stratified sample that fits the time left (reported with 95 % "
        "CIs) [default: none, every image].",
    ),
    click.option(
        "--layer", default=None, help="Grad-CAM layer name [default: the last conv layer]."
    ),
    click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default=None,
        help="Where attributions and scores are computed: this process, or a Ray cluster "
        "(needs pip install 'leakaudit[ray]'); the numbers are the same [default: local].",
    ),
    click.option(
        "--ray-address",
        default=None,
        help="--engine ray: address of a running cluster, e.g. auto or HOST:6379 "
        "[default: start a local cluster].",
    ),
    click.option(
        "--ray-workers",
        type=click.IntRange(min=1),
        default=None,
        help="--engine ray: actors that explain batches [default: one per CPU, or per GPU].",
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
    from leakaudit.auditing.pipeline import AuditOptions, run_audit
    from leakaudit.report import write_report
    from leakaudit.report.render import check_report_targets

    junit = cli.pop("junit", None)
    _shared_options(cli, format_, classes, methods, no_cache)
    cli["train"] = train
    opts = AuditOptions.merged(config_path, cli)
    check_out_dir(opts.out)
    check_report_targets(opts.out, junit)
    result = run_audit(opts, progress=not quiet)
    html, summary = write_report(result, opts.out, command=command_text(), junit_path=junit)
    model = result.models["model"]
    problems = len(result.eval_data.problems)
    click.echo(terminal_text(verdict_line(model.verdict, model.conditions)))
    click.echo(f"  accuracy on the {len(result.eval_data)} audited images "
               f"{model.eval_accuracy:.3f}; {problems} data problem(s) in the report")  # fmt: skip
    _echo_conditions(model.conditions)
    _echo_warnings(result.notes)
    click.echo(f"report:  {terminal_text(html)}")
    click.echo(f"summary: {terminal_text(summary)}")
    _echo_cache(opts)
    sys.exit(exit_code([model.verdict], [model.conditions], fail_on))


def _shared_options(cli: dict, format_, classes, methods, no_cache) -> None:
    """CLI spellings → AuditOptions fields (lists split, flags mapped)."""
    cli.update(format=format_, classes=csv_values(classes), methods=csv_values(methods),
               cache=False if no_cache else None, mean=_triple(cli.get("mean"), "--mean"),
               std=_triple(cli.get("std"), "--std"))  # fmt: skip
    if methods is not None and not cli["methods"]:
        raise click.BadParameter("--methods needs at least one method, e.g. saliency,lime")


def _triple(value: str | None, flag: str) -> list[float] | None:
    if value is None:
        return None
    parts = csv_values(value, float)
    if len(parts) != 3:
        raise click.BadParameter(f"{flag} needs three numbers R,G,B, got {value!r}")
    return parts


def _echo_conditions(conditions) -> None:
    """Failed and warned conditions; names can hold class or file names, so made inert."""
    for c in conditions:
        if c.status in ("FAIL", "WARN"):
            line = f"  {c.status}: {terminal_text(c.name)} = {c.value:.3f} (warn ≥ {c.warn:g}"
            line += ")" if c.fail == float("inf") else f", fail ≥ {c.fail:g})"
            click.echo(line)


def _echo_cache(opts) -> None:
    from leakaudit.explain.cache import cache_off_reason, default_cache_dir

    where = opts.cache_dir or default_cache_dir()
    reason = cache_off_reason(where) if opts.cache else "--no-cache"
    if reason:  # unusable or untrusted: the run went on without it (explain/cache.py)
        click.echo(f"cache:   off ({terminal_text(reason)})", err=True)
    else:
        click.echo(f"cache:   {terminal_text(where)} (reused by later runs; --no-cache to skip)",
                   err=True)  # fmt: skip


def _echo_warnings(notes: list[str]) -> None:
    """The notes that are warnings, one line each (they quote file names from the data)."""
    for note in notes:
        if note.startswith("Warning:"):
            click.echo(terminal_text(note), err=True)


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
    from leakaudit.auditing.pipeline import AuditOptions, run_compare
    from leakaudit.report import write_report
    from leakaudit.report.render import check_report_targets

    junit = cli.pop("junit", None)
    _shared_options(cli, format_, classes, methods, no_cache)
    pair = csv_values(names)
    if len(pair) != 2 or pair[0] == pair[1]:
        raise click.BadParameter("--names needs two different names, e.g. clean,poisoned")
    opts = AuditOptions.merged(config_path, cli, need_model=False)
    check_out_dir(opts.out)
    check_report_targets(opts.out, junit)
    result = run_compare(opts, model_a, model_b, (pair[0], pair[1]), progress=not quiet)
    html, summary = write_report(result, opts.out, command=command_text(), junit_path=junit)
    for name, audit in result.models.items():
        click.echo(terminal_text(f"{name}: {verdict_line(audit.verdict, audit.conditions)}; "
                                 f"accuracy {audit.eval_accuracy:.3f}"))  # fmt: skip
    for row in result.comparison:
        if row["score"] in ("tell_mass", "outside_mass", "correct") and row["n"]:  # the headline
            click.echo(terminal_text(
                f"  {row['method']:>9} {row['score']:<13} {pair[0]} − {pair[1]} = "
                f"{row['mean_diff']:+.3f} [{row['lo']:+.3f}, {row['hi']:+.3f}]"))  # fmt: skip
    _echo_warnings(result.notes)
    click.echo(f"report:  {terminal_text(html)}")
    click.echo(f"summary: {terminal_text(summary)}")
    _echo_cache(opts)
    audits = list(result.models.values())
    sys.exit(exit_code([a.verdict for a in audits], [a.conditions for a in audits], fail_on))


from leakaudit.insight.cli import insight as _insight  # noqa: E402

for _cmd in (demo, inject, crops, train_cmd, bench, power, report_cmd, _insight):
    main.add_command(_cmd)


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
        click.echo(_out_of_memory(args), err=True)
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
    """First line of a message, shortened, control characters shown as escapes: errors are
    one line on the terminal, and they quote file names and fields from the data."""
    line = text.strip().splitlines()[0] if text.strip() else "(no message)"
    line = terminal_text(line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _out_of_memory(args: list[str]) -> str:
    """The advice for the command that ran out: `report` has none of the audit's options."""
    command = next((a for a in args if not a.startswith("-")), "")
    if command == "report":
        from leakaudit.report.saved import CAP_ENV, DEFAULT_CAP_MB

        return (
            f"error: out of memory reading the saved results (lower {CAP_ENV}, default "
            f"{DEFAULT_CAP_MB} MB, to refuse results this large before reading them)"
        )
    return "error: out of memory (try --limit, a smaller --size or fewer methods)"


if __name__ == "__main__":
    run()
