"""summary.md: the audit in at most 60 lines of GitHub-flavoured markdown, for a PR comment.

Every string that comes from data (class names, model names, ids, config values) goes through
``md_escape``: a hostile class name cannot close a table cell, open a code span, or inject HTML.
"""

from __future__ import annotations

import re
from typing import Any

from leakaudit.evidence import metrics
from leakaudit.report.bundle import ReportData
from leakaudit.report.numbers import fmt, fmt_ci, key_numbers, method_order, model_order

MAX_LINES = 60
MAX_CONDITION_ROWS = 12

_MD_SPECIAL = re.compile(r"([\\*_\[\]~|])")


def md_escape(value: Any) -> str:
    """One line of inert text for a markdown table cell or paragraph.

    HTML metacharacters become entities (GitHub renders raw HTML in markdown), backticks become
    ``&#96;`` (no code spans), emphasis/link/strike characters and ``|`` are backslash-escaped,
    and line breaks become spaces. Data never starts a line here, so ``#``, ``-`` and ``1.``
    cannot start a heading or list."""
    text = " ".join(str(value).split())  # newlines, tabs → single spaces
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("`", "&#96;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _fence(text: str) -> list[str]:
    """A fenced code block that ``text`` cannot close: the fence is longer than any backtick
    run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, " ".join(text.splitlines()), fence]


def _verdict_word(v: str) -> str:
    return {"leak": "🔴 **LEAK**", "clean": "🟢 **CLEAN**"}.get(v, "⚪ **INCONCLUSIVE**")


def render_markdown(s: dict[str, Any], data: ReportData) -> str:
    """summary.md from the saved summary and results (see module docstring)."""
    models = model_order(s, data)
    lines = [f"### leakaudit: {md_escape(s.get('title', 'audit'))}", ""]
    lines.append(
        " · ".join(
            f"**{md_escape(m)}**{'' if m == 'model' else ' model'}: "
            f"{_verdict_word(s['models'][m]['verdict'])}"
            for m in models
        )
    )
    lines += [
        "",
        f"{s.get('n_eval', 0)} evaluation images · {len(s.get('class_names', []))} "
        f"classes · seed {s.get('seed')} · leakaudit {md_escape(s.get('leakaudit_version'))}",
        "",
    ]

    flagged = [
        (m, c)
        for m in models
        for c in s["models"][m]["conditions"]
        if c["status"] in ("FAIL", "WARN")
    ]
    flagged.sort(key=lambda mc: mc[1]["status"] != "FAIL")  # failures first (stable)
    if flagged:
        lines += [
            "| model | condition | status | value | warn ≥ | fail ≥ |",
            "|---|---|---|---:|---:|---:|",
        ]
        for m, c in flagged[:MAX_CONDITION_ROWS]:
            lines.append(
                f"| {md_escape(m)} | {md_escape(c['name'])} | **{c['status']}** | "
                f"{fmt(c['value'])} | {fmt(c['warn'], 2)} | {fmt(c['fail'], 2)} |"
            )
        if len(flagged) > MAX_CONDITION_ROWS:
            lines.append(f"| … | {len(flagged) - MAX_CONDITION_ROWS} more in report.html | | | | |")
    else:
        lines.append("No condition failed or warned.")
    lines.append("")

    numbers = key_numbers(s, data)
    audited = metrics.audited()
    lines += [
        "| model | method | eval accuracy | " + " | ".join(x.heading for x in audited) + " |",
        "|---|---|---:|" + "---:|" * len(audited),
    ]
    for m in models:
        acc = fmt_ci(numbers[m]["accuracy"])
        for method in method_order(s, data, m):
            k = numbers[m]["methods"][method]
            cells = " | ".join(fmt_ci(k[x.name], x.digits) for x in audited)
            lines.append(f"| {md_escape(m)} | {md_escape(method)} | {acc} | {cells} |")
    lines += [
        "",
        "Means over the evaluation images with 95 % bootstrap intervals; chance on the "
        f"tell {fmt(s.get('tell_area_fraction'))}, outside the object "
        f"{fmt(s.get('outside_area_fraction'))}.",
        "",
    ]

    for m in models:
        sus = s["models"][m]["suspected_tells"]
        # the judged suspect (its rows are the conditions'); summaries written before it: strong
        held = [x for x in sus if x.get("judged")] or [x for x in sus if x.get("strong")]
        if held:
            x = held[0]
            drop = (x.get("removal") or {}).get("accuracy_drop")
            follow = (x.get("swap") or {}).get("follow_rate")
            kind = "strong" if x.get("strong") else "weak, colour-first"
            lines.append(
                f"- Judged suspect ({md_escape(m)}, {kind}): box {md_escape(tuple(x['box']))}, "
                f"classes {md_escape(', '.join(x['classes']))}; covering it costs "
                f"{fmt(drop)} accuracy, swapping it is followed {fmt(follow, 2)}."
            )
        else:
            lines.append(f"- Judged suspect ({md_escape(m)}): none held to the lines.")
    problems = s.get("data_problems") or []
    lines.append(
        f"- Data problems: {len(problems)}" + (" (listed in report.html)." if problems else ".")
    )
    command = data.meta.get("command")
    if command:
        lines += ["", "<details><summary>Command</summary>", "", *_fence(command), "", "</details>"]
    lines.append("")
    lines.append("Full report: `report.html` (self-contained); machine-readable: `summary.json`.")
    return "\n".join(_cap(lines)) + "\n"


def _cap(lines: list[str]) -> list[str]:
    """At most ``MAX_LINES`` lines: drop from the middle (key-number rows), never the verdict."""
    if len(lines) <= MAX_LINES:
        return lines
    return [*lines[: MAX_LINES - 2], "", "… (truncated: see report.html)"]
