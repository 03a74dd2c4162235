"""Rendering: AuditResult → self-contained HTML, summary.json. No maths here."""

from leakaudit.report.render import render_html, to_summary, write_report

__all__ = ["render_html", "to_summary", "write_report"]
