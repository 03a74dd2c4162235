"""Writing a result folder: summary.json and results.npz, then every output rendered from them.

``write_report`` (after an audit) and ``render_outputs`` (``leakaudit report DIR``) stage every
file in one ``OutputSet``: all written or none, never through a link. The built-in outputs are
registered here (``outputs.OUTPUT_FORMATS``): html → report.html, md → summary.md, junit →
junit.xml; each renderer is looked up on its module when called, so a patched one runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.jsonable import jsonable
from leakaudit.paths import OutputSet, check_out_dir
from leakaudit.report import junit, markdown, render
from leakaudit.report.bundle import BUNDLE_NAME, load_bundle, save_bundle
from leakaudit.report.outputs import (
    DEFAULT_OUTPUTS,
    HTML_NAME,
    JUNIT_NAME,
    MD_NAME,
    OUTPUT_FORMATS,
    REPORT_FILES,
    RUN_INFO_NAME,
    SUMMARY_NAME,
    OutputFormat,
    load_saved,
    register_output,
    rounded_seconds,
)
from leakaudit.report.report_data import ReportData
from leakaudit.report.summary import summary_text, to_summary


def _html(s: dict[str, Any], data: ReportData) -> str:
    return render.render_html_from(s, data)


def _md(s: dict[str, Any], data: ReportData) -> str:
    return markdown.render_markdown(s, data)


def _junit(s: dict[str, Any], data: ReportData) -> str:
    return junit.render_junit(s, data)


register_output(OutputFormat("html", HTML_NAME, _html, "the full report"))
register_output(OutputFormat("md", MD_NAME, _md, "a PR-comment summary"))
register_output(OutputFormat("junit", JUNIT_NAME, _junit, "one test case per condition"))


def render_outputs(
    result_dir: str | Path,
    out_dir: str | Path | None = None,
    formats: tuple[str, ...] | list[str] = DEFAULT_OUTPUTS,
    junit_path: str | Path | None = None,
) -> dict[str, Path]:
    """Render the chosen formats from a result folder's saved files into ``out_dir``: all of
    them or none (a failure leaves the old files), never through a link (``OutputError``)."""
    s, data = load_saved(result_dir)
    out = check_out_dir(out_dir or result_dir)  # a file at --out is one line, not a traceback
    with OutputSet() as outs:
        written = _stage_renders(outs, s, data, out, formats, junit_path)
    return written


def _stage_renders(outs: OutputSet, s: dict[str, Any], data: ReportData, out: Path,
                   formats: tuple[str, ...] | list[str],
                   junit_path: str | Path | None) -> dict[str, Path]:  # fmt: skip
    """Stage the chosen ``OUTPUT_FORMATS`` (report.html, summary.md, junit.xml, …) in
    ``outs``; every destination is claimed (links refused) before the first is rendered, so a
    refusal costs no rendering. ``junit_path``: junit.xml goes there instead (and is added)."""
    written = {k: out / f.file_name for k, f in OUTPUT_FORMATS.items() if k in formats}
    if junit_path is not None:
        written["junit"] = Path(junit_path)
    for kind, path in written.items():
        outs.path(path, None if kind == "junit" and junit_path is not None else out)
    for kind, path in written.items():
        outs.write(path, OUTPUT_FORMATS[kind].render(s, data))
    return written


def write_report(
    result: AuditResult,
    out_dir: str | Path,
    run_info: dict[str, Any] | None = None,
    command: str | None = None,
    junit_path: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write summary.json and results.npz, then report.html and summary.md (and JUnit XML when
    ``junit_path`` is given) rendered from them; timings go to run_info.json. All of them or
    none: each is staged beside its destination and replaced only when every one is complete."""
    from leakaudit.report.collect import collect

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = to_summary(result)
    with OutputSet() as outs:  # all outputs or none; the old set stays until all are rendered
        for name in REPORT_FILES:
            outs.path(out / name, out)  # links refused before any work
        if junit_path is not None:
            outs.path(junit_path)
        json_tmp = outs.write(out / SUMMARY_NAME, summary_text(summary), out)
        data = collect(result, summary, command)
        bundle_tmp = outs.path(out / BUNDLE_NAME, out)
        save_bundle(data, bundle_tmp)
        _write_insight_pages(result, data, out, outs)
        s = json.loads(json_tmp.read_text(encoding="utf-8"))  # rendered from what was saved
        written = _stage_renders(outs, s, load_bundle(bundle_tmp), out, DEFAULT_OUTPUTS,
                                 junit_path)  # fmt: skip
        timings = result.timings or {n: a.seconds for n, a in result.models.items()}
        peaks = {n: a.peak_mb for n, a in result.models.items() if a.peak_mb}
        info = {"timings_s": rounded_seconds(timings), "peak_rss_mb": rounded_seconds(peaks),
                **(run_info or {})}  # fmt: skip
        text = json.dumps(jsonable(info), indent=2, sort_keys=True) + "\n"
        outs.write(out / RUN_INFO_NAME, text, out)
    return written["html"], out / SUMMARY_NAME


def _write_insight_pages(result: AuditResult, data: ReportData, out: Path, outs: OutputSet) -> None:
    """Each model's full insight page (``--insight``) beside the report, which links to it."""
    from leakaudit.insight.page import write_page

    for name, page in data.meta.get("insight_pages", {}).items():
        write_page(out, result.models[name].insight_page, page, outs)
