"""The command line as the user typed it, for the report footer and summary.md.

Rebuilt from click's parsed parameters (only those given on the command line, in declaration
order) rather than ``sys.argv``: the same command gives the same text however leakaudit was
started (console script, ``python -m``, a test runner), so the report stays deterministic.
"""

from __future__ import annotations

import shlex

import click
from click.core import ParameterSource


def command_line(ctx: click.Context, program: str = "leakaudit") -> str:
    """``leakaudit <command> <options given>`` quoted for a POSIX shell."""
    parts = [program, *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        name = param.name
        if name is None or ctx.get_parameter_source(name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params.get(name)
        if isinstance(param, click.Argument):
            values = value if isinstance(value, (list, tuple)) else [value]
            parts += [str(v) for v in values]
            continue
        if getattr(param, "is_flag", False):
            if value:
                parts.append(param.opts[0])
            elif param.secondary_opts:
                parts.append(param.secondary_opts[0])
            continue
        values = value if getattr(param, "multiple", False) else [value]
        for v in values:
            parts += [param.opts[0], str(v)]
    return shlex.join(parts)
