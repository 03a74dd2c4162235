"""Conditions turn measured values into PASS / WARN / FAIL; the verdict is derived from them.

Every condition states its value and thresholds in the report. What the conditions are and how
each is measured: the declarative list in ``conditions.py``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leakaudit.auditing.conditions import (  # noqa: F401  (swap_* and excess_mass: re-exported)
    CONDITIONS,
    SCOPES,
    SWAP_ALPHA,
    Evidence,
    excess_mass,
    swap_chance,
    swap_lines,
)

PASS, WARN, FAIL, NA = "PASS", "WARN", "FAIL", "N/A"


@dataclass(frozen=True)
class Thresholds:
    """(warn, fail) per condition kind; a value at or above ``fail`` fails. The kinds and their
    defaults are those of ``conditions.CONDITIONS`` (at construction time); ``lines`` overrides
    some of them."""

    lines: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.lines, Mapping):
            raise ValueError(
                f"thresholds: expected a table of kind = [warn, fail], got {_shown(self.lines)}"
            )
        unknown = sorted(str(k) for k in set(self.lines) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"unknown threshold(s): {unknown}; known: {sorted(CONDITIONS)}")
        full = {k: (s.warn, s.fail) for k, s in CONDITIONS.items()}
        full.update({k: check_lines(k, v) for k, v in self.lines.items()})
        object.__setattr__(self, "lines", full)

    def __getitem__(self, kind: str) -> tuple[float, float]:
        return self.lines[kind]

    def __getattr__(self, kind: str) -> tuple[float, float]:
        """``t.swap_follow_rate``, the attribute spelling of ``t["swap_follow_rate"]`` (kept for
        code written when each kind was a field)."""
        lines = self.__dict__.get("lines", {})
        if kind in lines:
            return lines[kind]
        raise AttributeError(f"no threshold kind {kind!r}")

    def as_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.lines.items()}

    @classmethod
    def from_dict(cls, values: Any) -> Thresholds:
        """A config's ``[thresholds]`` table; every line checked (``check_lines``)."""
        return cls(dict(values) if isinstance(values, Mapping) else values)


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_lines(kind: str, value: Any) -> tuple[float, float]:
    """``[warn, fail]`` of ``kind`` as floats, or a ValueError in the config's words.

    Why so strict: every condition fails at ``value ≥ fail``, so a line outside the range where
    the value lives (``ConditionSpec.line_range``) silently fails or passes every model, and
    NaN compares false with everything. ``fail = inf`` is allowed: the kind then only warns."""
    where = f"thresholds.{kind}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{where}: expected [warn, fail] (two numbers), got {_shown(value)}")
    lo, hi = CONDITIONS[kind].line_range
    span = f"≥ {lo:g}" if hi == math.inf else f"between {lo:g} and {hi:g}"
    for name, x in zip(("warn", "fail"), value, strict=True):
        if not _real(x):
            raise ValueError(f"{where}: {name} line must be a number, got {_shown(x)}")
        if math.isnan(x) or x == -math.inf or (x == math.inf and name == "warn"):
            allowed = "a finite number" + (" (or inf: never fails)" if name == "fail" else "")
            raise ValueError(f"{where}: {name} line must be {allowed}, got {x}")
        if not lo <= x <= hi and not (name == "fail" and x == math.inf):
            raise ValueError(f"{where}: {name} line must be {span}, got {x:g}")
    warn, fail = float(value[0]), float(value[1])
    if warn > fail:
        raise ValueError(
            f"{where}: need [warn, fail] with warn ≤ fail (a value at or above a line meets "
            f"it), got [{warn:g}, {fail:g}]"
        )
    return warn, fail


@dataclass
class Condition:
    """One measured value against its lines. ``set_aside`` says why a condition that was
    measured does not count (its method failed the sanity check, or could not run): shown in
    its ``label``, its status is N/A."""

    name: str
    kind: str
    evidence: str  # "behaviour" | "attribution"
    value: float
    warn: float
    fail: float
    set_aside: str = ""
    status: str = field(init=False)
    description: str = field(init=False)

    def __post_init__(self) -> None:
        self.description = CONDITIONS[self.kind].description
        v = self.value
        if self.set_aside or v is None or not np.isfinite(v):
            self.status = NA
        elif v >= self.fail:
            self.status = FAIL
        elif v >= self.warn:
            self.status = WARN
        else:
            self.status = PASS

    @property
    def label(self) -> str:
        """The name as reports show it, with the reason it was set aside."""
        return f"{self.name} ({self.set_aside})" if self.set_aside else self.name


SANITY_FAILED = "method failed sanity check"


def judge(
    behaviour: dict[str, dict[str, float]],
    methods: dict[str, dict[str, float]],
    tell_area: float,
    thresholds: Thresholds,
    untrusted: set[str] | frozenset[str] = frozenset(),
    n_classes: int | None = None,
    suspects: Sequence[Any] = (),
    ablation: dict[str, Any] | None = None,
    set_aside: dict[str, str] | None = None,
) -> tuple[list[Condition], int | None]:
    """Every check of every registered condition, in scope order (known tell, each method, the
    judged suspect, the model), from behavioural results and per-method means.

    Methods in ``untrusted`` failed the randomisation sanity check: their conditions are shown
    but set aside (N/A), since their maps do not depend on the model. Methods in ``set_aside``
    (method → reason) could not run: one N/A row each, never silently missing. ``n_classes``
    (the model's K) sets the swap condition's fail line by a binomial test (``swap_lines``).

    Suspects: only those that ``may_fail`` (every strong one; weak colour-first ones) are held
    against the lines — the behaviour, not the picture, is the evidence. Each is measured; the
    rows shown are those of the one whose result is worst (most FAILs, then WARNs; ties: the
    ranking's order): its index into ``suspects`` is returned beside the rows (None: no suspect
    held). Any suspect that fails the audit is therefore the one its rows show. Pure: nothing
    given is changed."""
    held = [i for i, s in enumerate(suspects) if s.may_fail]
    judged = None
    args = (behaviour, methods, tell_area, n_classes)
    ev = Evidence(*args, None, ablation or {})
    conds: list[Condition] = []
    for scope in SCOPES:
        if scope == "suspect":
            options = [_scope_rows(Evidence(*args, s, ablation or {}), scope, thresholds,
                                   untrusted) for s in (suspects[i] for i in held)]  # fmt: skip
            if options:
                best = min(range(len(options)), key=lambda i: (_severity(options[i]), i))
                judged = held[best]
                conds += options[best]
            continue
        conds += _scope_rows(ev, scope, thresholds, untrusted)
        if scope == "method":
            for method, reason in (set_aside or {}).items():  # could not run: N/A
                lines = thresholds["tell_top_rate"]
                conds.append(Condition(f"{method}: set aside", "tell_top_rate", "attribution",
                                       float("nan"), *lines, reason))  # fmt: skip
    return conds, judged


def build_conditions(*args: Any, suspects: Sequence[Any] = (), **kwargs: Any) -> list[Condition]:
    """``judge``'s rows, with each suspect's ``judged`` flag set in place (the older form; the
    audit uses ``judge`` and marks copies)."""
    conds, judged = judge(*args, suspects=suspects, **kwargs)
    for i, s in enumerate(suspects):
        s.judged = i == judged
    return conds


def _severity(rows: list[Condition]) -> tuple[int, int]:
    """Sort key: more FAILs first, then more WARNs."""
    return (-sum(c.status == FAIL for c in rows), -sum(c.status == WARN for c in rows))


def _scope_rows(
    ev: Evidence, scope: str, thresholds: Thresholds, untrusted: set[str] | frozenset[str]
) -> list[Condition]:
    """The condition rows of one scope (one per method in the method scope)."""
    rows: list[Condition] = []
    targets = list(ev.methods) if scope == "method" else [""]
    for target in targets:
        for spec in CONDITIONS.values():
            for check in (c for c in spec.checks if c.scope == scope):
                value = check.measure(ev, target)
                if value is None:
                    continue
                lines = thresholds[spec.kind]
                if check.lines is not None:
                    lines = check.lines(ev, lines)
                c = Condition(check.name.format(method=target), spec.kind, spec.evidence,
                              value, *lines)  # fmt: skip
                if target in untrusted and c.status != NA:
                    c.status, c.set_aside = NA, SANITY_FAILED
                rows.append(c)
    return rows


def verdict(conditions: list[Condition]) -> str:
    """``leak`` if any condition fails; ``clean`` if all tested ones pass or warn and at least one
    of them *could* have failed; ``inconclusive`` otherwise. A run whose only measured condition
    can merely warn (region ablation) has not looked for a leak, so it must not say "clean"."""
    statuses = [c.status for c in conditions]
    if FAIL in statuses:
        return "leak"
    if not any(c.status != NA and np.isfinite(c.fail) for c in conditions):
        return "inconclusive"
    return "clean"


def verdict_line(verdict: str, conditions) -> str:
    """The verdict and how much it rests on: "CLEAN — no leak found; 1 of 7 conditions
    measurable"; a caveat when nothing that could fail was measured."""
    measured = [c for c in conditions if c.status != "N/A"]
    can_fail = [c for c in measured if c.fail != float("inf")]
    failed = [c for c in measured if c.status == "FAIL"]
    words = {"leak": "leak found", "clean": "no leak found", "inconclusive": "nothing decisive"}
    line = (f"verdict: {verdict.upper()} — {words.get(verdict, verdict)}; "
            f"{len(measured)} of {len(conditions)} conditions measurable")  # fmt: skip
    if failed:
        line += f", {len(failed)} failed"
    if not can_fail:
        line += (" (none of them can fail: without tell annotations and without a suspected "
                 "tell strong enough to test, the audit could not test for a leak)")  # fmt: skip
    return line


def exit_code(verdicts: list[str], conditions: list, fail_on: str) -> int:
    """0 no leak found, 1 leak found (or what --fail-on adds), 3 inconclusive."""
    if "leak" in verdicts:
        return 1
    if fail_on == "warn" and any(c.status == "WARN" for cs in conditions for c in cs):
        return 1
    if "inconclusive" in verdicts:
        return 1 if fail_on == "inconclusive" else 3
    return 0
