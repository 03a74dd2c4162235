"""The options ``leakaudit audit`` and ``compare`` share, and their spellings → ``AuditOptions``.

Every flag here is an ``AuditOptions`` field (auditing/audit_options.py), settable in the TOML
config too and, unless it describes files, a keyword of ``leakaudit.audit``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import click

from leakaudit.auditing.audit_options import AuditOptions
from leakaudit.cli_model_options import model_input_options, parse_model_input
from leakaudit.cli_types import (
    FORMAT_OPTION,
    JUNIT_HELP,
    MARGIN_HELP,
    MODES,
    POSITIVE,
    SEED,
    SIDE,
    WINDOW_HELP,
    FiniteFloatRange,
    csv_values,
)
from leakaudit.explain.base import CliOption
from leakaudit.explain.registry import option_keys

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


class MethodOptionsCommand(click.Command):
    """A command whose per-method options (``--lime-samples``, ``--layer``, a plugin's own) are
    read from the explainer registry whenever ``--help`` is shown or a command line parsed, so
    a method registered after import brings its flags with it (``explain/registry.py``)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        have = {o for p in self.params for o in p.opts}
        extra = [_method_option(o) for o in option_keys().values() if o.flag not in have]
        help_option = self.get_help_option(ctx)
        return [*self.params, *extra, *([help_option] if help_option is not None else [])]


def _method_option(opt: CliOption) -> click.Option:
    """The click option for a method's declared ``CliOption`` (type, range, choices, help)."""
    kind: Any = opt.type
    if opt.choices:
        kind = click.Choice(list(opt.choices))
    elif opt.type is int:
        kind = click.IntRange(min=None if opt.minimum is None else int(opt.minimum))
    elif opt.type is float:
        kind = FiniteFloatRange(min=opt.minimum)
    return click.Option([opt.flag, opt.option_key], type=kind, default=None, help=opt.help)


def audit_options(f):
    """The options `audit` and `compare` share: data, methods, limits, config, output, and
    the model-input options (``cli_model_options.py``, shared with `insight`)."""
    for option in reversed(_AUDIT_OPTIONS):
        f = option(f)
    return model_input_options(f)


def shared_options(cli: dict, format_, classes, methods, no_cache) -> None:
    """CLI spellings → AuditOptions fields (lists split, flags mapped); the options methods
    declare themselves that are no field (a plugin's) go to ``method_options``."""
    own = {f.name for f in fields(AuditOptions)}
    extra = {k: cli.pop(k) for k in list(cli) if k in option_keys() and k not in own}
    cli["method_options"] = {k: v for k, v in extra.items() if v is not None} or None
    cli.update(format=format_, classes=csv_values(classes), methods=csv_values(methods),
               cache=False if no_cache else None)  # fmt: skip
    parse_model_input(cli)
    if methods is not None and not cli["methods"]:
        raise click.BadParameter("--methods needs at least one method, e.g. saliency,lime")
