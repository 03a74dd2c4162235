"""Command line: parse options, call the library, print where the results are. Nothing else.

This module holds the group, ``audit`` and ``compare`` (they share one option list, in
``cli_options.py``) and the error handling of ``run``; the other commands live in
``cli_data.py`` (inject, crops, train) and ``cli_experiments.py`` (demo, bench, power, report).
Both commands end in ``pipeline.build_result``, the builder ``leakaudit.audit`` calls too.

Exit codes: 0 no leak found, 1 leak found, 2 error (bad input, bad options).
"""

from __future__ import annotations

import sys
import traceback

import click

from leakaudit.auditing.verdict import exit_code, verdict_line
from leakaudit.cli_data import crops, inject, train_cmd
from leakaudit.cli_experiments import bench, demo, power, report_cmd
from leakaudit.cli_options import MethodOptionsCommand, audit_options, shared_options
from leakaudit.cli_types import command_text, csv_values
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


@main.command(cls=MethodOptionsCommand)
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
    from leakaudit.report.outputs import check_report_targets

    junit = cli.pop("junit", None)
    shared_options(cli, format_, classes, methods, no_cache)
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


@main.command(cls=MethodOptionsCommand)
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
    from leakaudit.report.outputs import check_report_targets

    junit = cli.pop("junit", None)
    shared_options(cli, format_, classes, methods, no_cache)
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
