"""JUnit XML: one test case per condition per model, so a CI system shows the audit as tests.

FAIL → ``<failure>``, WARN → passed with a ``<system-out>`` note, N/A → ``<skipped>``. Built
with ElementTree (escapes ``<``, ``&`` and quotes); characters XML 1.0 cannot hold at all
(control characters) are replaced, so hostile names still give a well-formed file.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from leakaudit.report.bundle import ReportData
from leakaudit.report.numbers import fmt, model_order

_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(value: Any) -> str:
    """Text XML 1.0 can hold: forbidden characters become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(value))


def _describe(c: dict[str, Any]) -> str:
    return (
        f"{c['name']}: value {fmt(c['value'])} (warn ≥ {fmt(c['warn'], 2)}, "
        f"fail ≥ {fmt(c['fail'], 2)}; {c['evidence']} evidence, kind {c['kind']})"
    )


def render_junit(s: dict[str, Any], data: ReportData) -> str:
    """The JUnit XML text for the saved summary (deterministic: no timestamps, time="0")."""
    models = model_order(s, data)
    suites = ET.Element("testsuites", {"name": _x(f"leakaudit: {s.get('title', '')}")})
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for model in models:
        conds = s["models"][model]["conditions"]
        counts = {
            "tests": len(conds),
            "failures": sum(c["status"] == "FAIL" for c in conds),
            "skipped": sum(c["status"] == "N/A" for c in conds),
        }
        for k in totals:
            totals[k] += counts[k]
        suite = ET.SubElement(
            suites,
            "testsuite",
            {
                "name": _x(f"leakaudit.{model}"),
                "tests": str(counts["tests"]),
                "failures": str(counts["failures"]),
                "errors": "0",
                "skipped": str(counts["skipped"]),
                "time": "0",
            },
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("verdict", s["models"][model]["verdict"]),
            ("seed", s.get("seed")),
            ("n_eval", s.get("n_eval")),
        ):
            ET.SubElement(props, "property", {"name": name, "value": _x(value)})
        for c in conds:
            case = ET.SubElement(
                suite,
                "testcase",
                {
                    "classname": _x(f"leakaudit.{model}"),
                    "name": _x(c["name"]),
                    "time": "0",
                },
            )
            text = _x(_describe(c))
            if c["status"] == "FAIL":
                fail = ET.SubElement(case, "failure", {"message": text, "type": "LeakCondition"})
                fail.text = text
            elif c["status"] == "N/A":
                ET.SubElement(case, "skipped", {"message": _x(f"not measurable: {c['name']}")})
            elif c["status"] == "WARN":
                out = ET.SubElement(case, "system-out")
                out.text = _x(f"WARN: {_describe(c)}")
    for k, v in totals.items():
        suites.set(k, str(v))
    suites.set("errors", "0")
    ET.indent(suites)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
