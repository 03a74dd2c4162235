"""Config values against ``AuditOptions``' type hints, in the config's words.

``limit = "ten"``, ``margin = nan`` or ``arch_kwargs = {1 = 2}`` must stop before any data is read
with one line that names the option as the config spells it (``margin: expected a finite number,
got nan``), not Python's names for types ("expected float, got float nan"). NaN and ±inf are
refused for every float, also inside lists and ``arch_kwargs``.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any

from leakaudit.auditing.verdict import Thresholds
from leakaudit.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


def check_type(name: str, value: Any, hint: Any) -> None:
    """A config value of the wrong type (``limit = "ten"``, ``margin = nan``) is a one-line
    ConfigError in the config's words (``margin: expected a finite number, got nan``)."""
    if name == "thresholds":
        _ = thresholds_of(value)
        return
    problem = _problem(name, value, hint)
    if problem:
        raise ConfigError(problem)


def thresholds_of(value: Any) -> Thresholds:
    """The ``[thresholds]`` table as ``Thresholds``, or a ConfigError in the config's words."""
    try:
        return Thresholds.from_dict(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e


def _got(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return text if isinstance(value, float) else f"{type(value).__name__} {text}"


_NOUNS = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string"}
_PLURALS = {
    bool: "true/false values",
    int: "whole numbers",
    float: "finite numbers",
    str: "strings",
}


def _problem(where: str, value: Any, hint: Any) -> str | None:
    """What is wrong with ``value`` for type ``hint`` (None: nothing), naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))  # our unions are X | None
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return _finite_everywhere(where, value)
    if origin is list:
        if not isinstance(value, list):
            return (
                f"{where}: expected a list of {_PLURALS.get(args[0], 'values')}, got {_got(value)}"
            )
        return next((p for i, v in enumerate(value)
                     if (p := _problem(f"{where}[{i}]", v, args[0]))), None)  # fmt: skip
    if origin is dict:  # arch_kwargs: keyword arguments of the model's constructor
        if not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
            return f"{where}: expected a table of name = value, got {_got(value)}"
        return next((p for k, v in value.items() if (p := _finite_everywhere(f"{where}.{k}", v))),
                    None)  # fmt: skip
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: _real(v) and math.isfinite(v),
        str: lambda v: isinstance(v, str),
    }[hint](value)
    return None if ok else f"{where}: expected {_NOUNS[hint]}, got {_got(value)}"


def _real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite_everywhere(where: str, value: Any) -> str | None:
    """NaN or ±inf anywhere in a free-form value (an ``arch_kwargs`` entry) is refused too."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: expected a finite number, got {value}"
    if isinstance(value, list):
        return next((p for i, v in enumerate(value)
                     if (p := _finite_everywhere(f"{where}[{i}]", v))), None)  # fmt: skip
    if isinstance(value, dict):
        return next((p for k, v in value.items()
                     if (p := _finite_everywhere(f"{where}.{k}", v))), None)  # fmt: skip
    return None


def read_config(path: str) -> dict[str, Any]:
    """The options of a TOML config (top level or an ``[audit]`` table), or a one-line
    ``ConfigError`` naming the file: missing, not UTF-8, not TOML, or not a table of options."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except IsADirectoryError as e:
        raise ConfigError(f"config file {path} is a folder") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte at offset {e.start}); save it as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from e
    table = raw.get("audit", raw)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [audit] must be a table of options, got {table!r}")
    return table
