"""A result folder's files: their names, the saved pair read back, and the output formats.

``OUTPUT_FORMATS`` maps an output name to the file it writes and its renderer
``(summary dict, ReportData) → text`` (the built-ins are registered by ``write.py``, whose
``render_outputs`` / ``write_report`` stage every chosen one in one ``OutputSet``: all written
or none) and ``leakaudit report --format`` offers exactly its keys. Adding an output is one
``register_output`` call.
``load_saved`` reads ``summary.json`` + ``results.npz`` back, checked before any renderer
sees them (``saved.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakaudit.paths import check_writable_file, refuse_link
from leakaudit.report import saved
from leakaudit.report.bundle import BUNDLE_NAME, load_bundle
from leakaudit.report.report_data import ReportData
from leakaudit.report.saved import ReportError

SUMMARY_NAME = "summary.json"
RUN_INFO_NAME = "run_info.json"
DEFAULT_OUTPUTS = ("html", "md")  # what an audit writes (and `leakaudit report` by default)


@dataclass(frozen=True)
class OutputFormat:
    """One rendered output: ``name`` (``--format``), the ``file_name`` it writes in the
    result folder, ``render(summary, data) → text`` (deterministic: the same saved results
    give the same bytes) and a short ``description`` for the help text."""

    name: str
    file_name: str
    render: Callable[[dict[str, Any], ReportData], str]
    description: str = ""


OUTPUT_FORMATS: dict[str, OutputFormat] = {}


def register_output(fmt: OutputFormat) -> OutputFormat:
    """Add (or replace) an output format; ``render_outputs`` and ``leakaudit report`` follow."""
    OUTPUT_FORMATS[fmt.name] = fmt
    return fmt


HTML_NAME, MD_NAME, JUNIT_NAME = "report.html", "summary.md", "junit.xml"  # built-ins: write.py
REPORT_FILES = (SUMMARY_NAME, BUNDLE_NAME, RUN_INFO_NAME, HTML_NAME, MD_NAME)  # write_report's


def formats_help() -> str:
    """``html (report.html), md (summary.md), junit (junit.xml)``."""
    return ", ".join(f"{k} ({f.file_name})" for k, f in OUTPUT_FORMATS.items())


def load_saved(result_dir: str | Path) -> tuple[dict[str, Any], ReportData]:
    """summary.json and results.npz of a result folder, each checked (``saved.py``) before
    any renderer reads it: a bad or hostile file is a ``ReportError`` naming file and field."""

    d = Path(result_dir)
    path = d / SUMMARY_NAME
    try:
        size = path.stat().st_size
        cap = saved.max_results_bytes()
        if size > cap:
            raise ReportError(f"{path}: {size} bytes (the cap is {cap / 2**20:g} MB; "
                              f"raise it with {saved.CAP_ENV}=<MB>)")  # fmt: skip
        s = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except FileNotFoundError as e:
        raise ReportError(f"{path}: not found (is {d} a leakaudit result folder?)") from e
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(s, dict) or not isinstance(s.get("models"), dict):
        raise ReportError(f"{path}: not a leakaudit summary (no 'models')")
    saved.check_summary(s, str(path))
    data = load_bundle(d / BUNDLE_NAME)
    saved.check_pair(s, data, str(d / BUNDLE_NAME))
    return s, data


def _no_constant(name: str) -> None:
    """summary.json never holds NaN/Infinity (undefined is null): refuse them."""
    raise ValueError(f"{name} is not JSON (undefined values are null)")


def check_report_targets(out_dir: str | Path, junit_path: str | Path | None = None) -> None:
    """Before the audit: refuse a link where ``write_report`` will write, and a ``--junit``
    whose folder takes no file, so neither costs a whole audit first."""
    out = Path(out_dir)
    for name in REPORT_FILES:
        refuse_link(out / name, out)
    if junit_path is not None:
        check_writable_file(junit_path, "--junit")


def rounded_seconds(timings: dict[str, Any]) -> dict[str, Any]:
    """run_info.json's seconds to 0.01 s, nested per model where the audit kept them so."""
    return {
        k: rounded_seconds(v) if isinstance(v, dict) else round(float(v), 2)
        for k, v in timings.items()
    }
