"""Rendering: AuditResult → saved results → HTML, summary.md, JUnit XML, summary.json. No maths.

Every output is rendered from the saved results (``summary.json`` + ``results.npz``), so
``leakaudit report RESULT_DIR`` re-renders them byte for byte without the model or the data.
"""

from leakaudit.report.outputs import OUTPUT_FORMATS, OutputFormat, load_saved, register_output
from leakaudit.report.render import render_html, render_html_from
from leakaudit.report.summary import to_summary
from leakaudit.report.write import render_outputs, write_report

__all__ = [
    "OUTPUT_FORMATS",
    "OutputFormat",
    "load_saved",
    "register_output",
    "render_html",
    "render_html_from",
    "render_outputs",
    "to_summary",
    "write_report",
]
