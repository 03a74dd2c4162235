"""The model-input options every command that feeds a user's model shares: ``--preprocess``,
``--mean``, ``--std``, ``--channel-order`` (same names, help, parsing and validation everywhere).

``model_input_options`` is the click decorator (a drop-in for the four options ``audit`` and
``compare`` list in ``cli_options.py``); ``parse_model_input`` turns the CLI spellings into
``AuditOptions`` field values (``--mean 0.5,0.5,0.5`` → ``[0.5, 0.5, 0.5]``);
``resolve_model_input`` validates them with ``AuditOptions``' own ``validate`` and applies them
with its ``normalisation`` (``--preprocess`` preset, else ``--mean/--std``, else the model
card's), so a command outside the audit (``leakaudit insight``) feeds the model exactly what
the audit feeds it.
"""

from __future__ import annotations

from typing import Any

import click

from leakaudit.cli_types import csv_values

MODEL_INPUT_OPTIONS = [
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
]


def model_input_options(f):
    """Add ``--preprocess``, ``--mean``, ``--std`` and ``--channel-order`` to a command."""
    for option in reversed(MODEL_INPUT_OPTIONS):
        f = option(f)
    return f


def triple(value: str | None, flag: str) -> list[float] | None:
    """``"R,G,B"`` → three finite floats (None stays None); anything else is a usage error."""
    if value is None:
        return None
    parts = csv_values(value, float)
    if len(parts) != 3:
        raise click.BadParameter(f"{flag} needs three numbers R,G,B, got {value!r}")
    return parts


def parse_model_input(cli: dict[str, Any]) -> None:
    """``--mean``/``--std`` strings in ``cli`` → lists of three floats, in place."""
    cli["mean"] = triple(cli.get("mean"), "--mean")
    cli["std"] = triple(cli.get("std"), "--std")


def resolve_model_input(
    card: dict[str, Any],
    preprocess: str | None = None,
    mean: str | None = None,
    std: str | None = None,
    channel_order: str | None = None,
) -> dict[str, Any]:
    """The CLI values (as typed) + the model card → ``{"mean", "std", "channel_order"}`` for
    ``ModelSpec``. Validated by ``AuditOptions.validate`` (both a preset and --mean/--std is an
    error, three numbers each, std > 0), so every command refuses the same values in the same
    words; raises ``ConfigError``."""
    from leakaudit.auditing.audit_options import AuditOptions

    cli: dict[str, Any] = {"preprocess": preprocess, "mean": mean, "std": std}
    parse_model_input(cli)
    cli["channel_order"] = channel_order
    # the audit's own checks; data/format only satisfy the rest of validate (no file is read)
    opts = AuditOptions.merged(None, {"data": "-", "format": "memory", **cli}, need_model=False)
    mean_, std_ = opts.normalisation(card)
    return {"mean": mean_, "std": std_, "channel_order": opts.channel_order}
