"""Option value types and parsers shared by every command (``cli.py``, ``cli_data.py``,
``cli_experiments.py``, ``insight/cli.py``), so one option means one range and one spelling
everywhere and bad values stop before any work."""

from __future__ import annotations

import math

import click

from leakaudit.explain.lime import MIN_SAMPLES


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses nan and ±inf: ``nan < 0`` is false, so a plain
    range lets NaN through to code that then compares or averages with it."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        return rv


SEED = click.IntRange(0, 2**32 - 1)  # numpy's SeedSequence takes non-negative integers
SIDE = click.IntRange(8, 4096)  # model input side; the cap matches the checkpoint check
POSITIVE = click.IntRange(min=1)
FRACTION = FiniteFloatRange(0.0, 1.0)
LIME_SAMPLES = click.IntRange(min=MIN_SAMPLES)  # fewer samples cannot rank superpixels
MARGIN = FiniteFloatRange(min=0.0)
WINDOW = FiniteFloatRange(min=1.0)


class RegistryChoice(click.Choice):
    """A ``click.Choice`` whose choices are read from a registry when used (``--help``,
    parsing), so a format registered after import is offered too."""

    def __init__(self, names):
        self._names = names
        super().__init__(list(names()))

    @property
    def choices(self):
        return tuple(self._names())

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns it; the registry wins
        pass


def dataset_format_names(boxes: bool | None = None) -> list[str]:
    """The registered dataset formats (``leakaudit.data.formats.DATASET_FORMATS``)."""
    from leakaudit.data.formats import format_names

    return format_names(boxes)


DATASET_FORMATS = RegistryChoice(dataset_format_names)
MODES = click.Choice(["image", "crop"])
# the dataset-format option every command that reads data shares
FORMAT_OPTION = click.option(
    "--format",
    "format_",
    type=DATASET_FORMATS,
    default=None,
    help="Dataset format [default: detected from --data].",
)

JUNIT_HELP = "Also write JUnit XML here: one test case per condition per model (for CI)."


def command_text() -> str:
    """The command as typed, for the report's footer and summary.md."""
    from leakaudit.report.command import command_line

    return command_line(click.get_current_context())


def parse_position(value: str) -> str | tuple[int, int]:
    if "," in value:
        try:
            x, y = (int(v) for v in value.split(","))
        except ValueError as exc:
            raise click.BadParameter(f"expected X,Y integers, got {value!r}") from exc
        return (x, y)
    return value


def detect_format(data: str) -> str:
    """The dataset format of ``data`` (VOC root, COCO json, CSV, image folder)."""
    from leakaudit.data.formats import detect_format as detect

    return detect(data)


def csv_values(value: str | None, cast=str) -> list | None:
    """``"a,b"`` → ``[cast(a), cast(b)]``; numbers must be finite (``"nan,0,0"`` is refused)."""
    if value is None:
        return None
    try:
        out = [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"cannot parse {value!r}") from exc
    if any(isinstance(v, float) and not math.isfinite(v) for v in out):
        raise click.BadParameter(f"{value!r}: expected finite numbers")
    return out


def parse_colour(value: str) -> tuple[float, float, float]:
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


def class_colour(item: str) -> tuple[str, tuple[float, float, float]]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"--colour {item!r}: use CLASS=#rrggbb")
    return name, parse_colour(value)
