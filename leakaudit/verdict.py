"""Conditions turn measured values into PASS / WARN / FAIL; the verdict is derived from them.

Every condition states its value and thresholds in the report. Thresholds are *not* tuned to
the demo: each is a statement a reviewer can check ("the tell is the single most important
region in most images", "covering 2 % of the pixels costs 20 points of accuracy"), and the
README's calibration table shows where clean and poisoned models fall over many seeds, tell
colours, sizes and positions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

PASS, WARN, FAIL, NA = "PASS", "WARN", "FAIL", "N/A"


@dataclass(frozen=True)
class Thresholds:
    """(warn, fail) per condition kind; a value at or above ``fail`` fails."""

    removal_accuracy_drop: tuple[float, float] = (0.10, 0.20)
    removal_class_drop: tuple[float, float] = (0.10, 0.20)
    swap_follow_rate: tuple[float, float] = (0.25, 0.50)
    tell_top_rate: tuple[float, float] = (0.25, 0.50)
    tell_mass_excess: tuple[float, float] = (0.15, 0.30)
    # Region ablation is evidence, not a verdict by itself: context can honestly carry class
    # information (e.g. cell crops whose scale differs by class), so it only warns by default.
    ablation_retained: tuple[float, float] = (0.5, float("inf"))

    def as_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> Thresholds:
        known = cls.__dataclass_fields__
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown threshold(s): {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: tuple(float(x) for x in v) for k, v in values.items()})


DESCRIPTIONS = {
    "removal_accuracy_drop": "accuracy lost when the tell is covered by a neutral local fill",
    "removal_class_drop": "the same, in the worst class, at its 95 % lower bound (Wilson)",
    "swap_follow_rate": "share of images predicted as the class whose tell colour was pasted in",
    "tell_top_rate": "share of images whose top-attributed pixel/superpixel lands on the tell",
    "tell_mass_excess": "positive attribution on the tell beyond its area share: (m − a)/(1 − a)",
    "ablation_retained": "share of above-chance accuracy kept with the object removed",
}


@dataclass
class Condition:
    name: str
    kind: str
    evidence: str  # "behaviour" | "attribution"
    value: float
    warn: float
    fail: float
    status: str = field(init=False)
    description: str = field(init=False)

    def __post_init__(self) -> None:
        self.description = DESCRIPTIONS[self.kind]
        v = self.value
        if v is None or not np.isfinite(v):
            self.status = NA
        elif v >= self.fail:
            self.status = FAIL
        elif v >= self.warn:
            self.status = WARN
        else:
            self.status = PASS


def excess_mass(mass: float, area: float) -> float:
    """How much of the attribution the tell holds beyond what its area earns by chance."""
    if not (np.isfinite(mass) and np.isfinite(area)) or area >= 1:
        return float("nan")
    return (mass - area) / (1 - area)


def build_conditions(
    behaviour: dict[str, dict[str, float]],
    methods: dict[str, dict[str, float]],
    tell_area: float,
    thresholds: Thresholds,
    untrusted: set[str] | frozenset[str] = frozenset(),
) -> list[Condition]:
    """Conditions from behavioural results and per-method tell scores (means over tell images).

    Methods in ``untrusted`` failed the randomisation sanity check: their conditions are shown
    but marked N/A, since their maps do not depend on the model."""
    t = thresholds
    conds = []
    if "removal" in behaviour:
        v = behaviour["removal"].get("accuracy_drop", np.nan)
        conds.append(Condition("tell removal", "removal_accuracy_drop", "behaviour", v,
                               *t.removal_accuracy_drop))  # fmt: skip
        v = behaviour["removal"].get("worst_class_drop_lower", np.nan)
        conds.append(Condition("tell removal, worst class", "removal_class_drop", "behaviour", v,
                               *t.removal_class_drop))  # fmt: skip
    if "swap" in behaviour:
        v = behaviour["swap"].get("follow_rate", np.nan)
        conds.append(Condition("tell swap", "swap_follow_rate", "behaviour", v,
                               *t.swap_follow_rate))  # fmt: skip
    for m, s in methods.items():
        top = s.get("tell_top_rate", np.nan)
        ex = excess_mass(s.get("tell_mass", np.nan), tell_area)
        pair = [
            Condition(f"{m}: top on tell", "tell_top_rate", "attribution", top, *t.tell_top_rate),
            Condition(f"{m}: tell mass", "tell_mass_excess", "attribution", ex,
                      *t.tell_mass_excess),
        ]  # fmt: skip
        for c in pair:
            if m in untrusted and c.status != NA:
                c.status, c.name = NA, f"{c.name} (method failed sanity check)"
        conds += pair
    return conds


def suspect_conditions(suspects: list, thresholds: Thresholds) -> list[Condition]:
    """Behavioural conditions on the top suspected tell found *without* annotations.

    Only a strong suspect is tested against the thresholds: the behaviour, not the picture, is
    the evidence, so a suspect that the model does not actually use cannot fail the audit."""
    strong = [s for s in suspects if s.found.strong]
    if not strong:
        return []
    top, t = strong[0], thresholds
    drop = top.removal.get("accuracy_drop", np.nan)
    follow = top.swap.get("follow_rate", np.nan) if top.swap else np.nan
    return [
        Condition("suspected tell removal", "removal_accuracy_drop", "behaviour", drop,
                  *t.removal_accuracy_drop),
        Condition("suspected tell swap", "swap_follow_rate", "behaviour", follow,
                  *t.swap_follow_rate),
    ]  # fmt: skip


def verdict(conditions: list[Condition]) -> str:
    """``leak`` if any condition fails; ``clean`` if all tested ones pass or warn;
    ``inconclusive`` if nothing could be tested (no known tell)."""
    statuses = [c.status for c in conditions]
    if FAIL in statuses:
        return "leak"
    if all(s == NA for s in statuses):
        return "inconclusive"
    return "clean"
