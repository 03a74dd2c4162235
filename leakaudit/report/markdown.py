"""summary.md: the audit in at most 60 lines and 60 000 characters of GitHub-flavoured
markdown, for a PR comment (GitHub refuses comments over 65 536 characters).

Saved results are untrusted input (a results folder can be hand-edited): every string that
comes from them (title, class, model and method names, condition names, statuses, versions,
the command) goes through ``textsafe.md_text`` / ``md_code``, so a hostile name cannot close a
table cell, open a code span, inject HTML, link, or mention anyone. Long tables are cut with a
note saying how many rows were left out and where they all are.
"""

from __future__ import annotations

import re
from typing import Any

from leakaudit.evidence import metrics
from leakaudit.report.bundle import ReportData
from leakaudit.report.numbers import fmt, fmt_ci, key_numbers, method_order, model_order
from leakaudit.textsafe import md_code, md_text

MAX_LINES = 60
MAX_CHARS = 60_000  # under GitHub's 65 536-character comment limit, with room for a header
MAX_CONDITION_ROWS = 12
NAME_CHARS = 120  # characters of one data string shown (escaping may grow it ~5×)
TABLE_CHARS = 15_000  # per table: two tables + the rest stay under MAX_CHARS
COMMAND_CHARS = 2_000
FULL_DATA = "all of them are in summary.json and report.html"


def md_escape(value: Any) -> str:
    """One line of inert markdown text for ``value`` (``textsafe.md_text``, shortened)."""
    return md_text(value, NAME_CHARS)


def _num(value: Any, digits: int = 3) -> str:
    """``fmt`` for a table cell: a number as digits; anything else (a hand-edited file) inert."""
    return md_escape(fmt(value, digits))


def _fence(text: str) -> list[str]:
    """A fenced code block that ``text`` cannot close: the fence is longer than any backtick
    run inside it."""
    text = md_code(" ".join(text.splitlines()))
    if len(text) > COMMAND_CHARS:
        left = len(text) - COMMAND_CHARS
        text = text[:COMMAND_CHARS] + f" … ({left} characters left out; see report.html)"
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def _within(rows: list[str], budget: int, max_rows: int | None = None) -> tuple[list[str], int]:
    """The first rows that fit ``budget`` characters (and ``max_rows``); how many were left."""
    kept: list[str] = []
    used = 0
    for row in rows[:max_rows]:
        if used + len(row) + 1 > budget:
            break
        kept.append(row)
        used += len(row) + 1
    return kept, len(rows) - len(kept)


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
        f"{md_escape(s.get('n_eval', 0))} evaluation images · "
        f"{len(s.get('class_names', []))} classes · seed {md_escape(s.get('seed'))} · "
        f"leakaudit {md_escape(s.get('leakaudit_version'))}",
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
        rows = [
            f"| {md_escape(m)} | {md_escape(c['name'])} | **{md_escape(c['status'])}** | "
            f"{_num(c['value'])} | {_num(c['warn'], 2)} | {_num(c['fail'], 2)} |"
            for m, c in flagged
        ]
        kept, left = _within(rows, TABLE_CHARS, MAX_CONDITION_ROWS)
        lines += kept
        if left:
            lines.append(f"| … | {left} more rows left out ({FULL_DATA}) | | | | |")
    else:
        lines.append("No condition failed or warned.")
    lines.append("")

    numbers = key_numbers(s, data)
    audited = metrics.audited()
    lines += [
        "| model | method | eval accuracy | " + " | ".join(x.heading for x in audited) + " |",
        "|---|---|---:|" + "---:|" * len(audited),
    ]
    rows = []
    for m in models:
        acc = md_escape(fmt_ci(numbers[m]["accuracy"]))
        for method in method_order(s, data, m):
            k = numbers[m]["methods"][method]
            cells = " | ".join(md_escape(fmt_ci(k[x.name], x.digits)) for x in audited)
            rows.append(f"| {md_escape(m)} | {md_escape(method)} | {acc} | {cells} |")
    kept, left = _within(rows, TABLE_CHARS)
    lines += kept
    if left:
        lines.append(f"| … | {left} more rows left out ({FULL_DATA}) | |" + " |" * len(audited))
    lines += [
        "",
        "Means over the evaluation images with 95 % bootstrap intervals; chance on the "
        f"tell {_num(s.get('tell_area_fraction'))}, outside the object "
        f"{_num(s.get('outside_area_fraction'))}.",
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
                f"{_num(drop)} accuracy, swapping it is followed {_num(follow, 2)}."
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
    """At most ``MAX_LINES`` lines and ``MAX_CHARS`` characters: drop from the middle
    (key-number rows, suspects), never the verdict; say where the rest is."""
    note = ["", f"… (truncated to fit a PR comment: {FULL_DATA})"]
    if len(lines) <= MAX_LINES and sum(len(x) + 1 for x in lines) <= MAX_CHARS:
        return lines
    kept, _ = _within(lines[: MAX_LINES - len(note)], MAX_CHARS - 200)
    return [*kept, *note]
