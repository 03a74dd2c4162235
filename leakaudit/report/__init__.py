"""Rendering: AuditResult → saved results → HTML, summary.md, JUnit XML, summary.json. No maths.

Every output is rendered from the saved results (``summary.json`` + ``results.npz``), so
``leakaudit report RESULT_DIR`` re-renders them byte for byte without the model or the data.
"""

from leakaudit.report.render import (
    FORMATS,
    load_saved,
    render_html,
    render_html_from,
    render_outputs,
    write_report,
)
from leakaudit.report.summary import to_summary

__all__ = [
    "FORMATS",
    "load_saved",
    "render_html",
    "render_html_from",
    "render_outputs",
    "to_summary",
    "write_report",
]
