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
from scipy.stats import binom

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


# The swap condition's fail line (see ``swap_lines``). A one-sided binomial test at this level
# over K − 1 targets per image and at most two swap conditions per audit (known and suspected
# tell) keeps a tell-blind model's chance of failing it well under 1 %.
SWAP_ALPHA = 0.001


def swap_chance(kept_true_rate: float, n_classes: int) -> float:
    """The follow rate a tell-blind model shows by chance: its errors on the pasted images
    spread over the K − 1 wrong classes, and the pasted class is one of them."""
    if not np.isfinite(kept_true_rate) or n_classes < 2:
        return float("nan")
    return float(np.clip(1.0 - kept_true_rate, 0.0, 1.0)) / (n_classes - 1)


def swap_lines(
    swap: dict[str, float], n_classes: int | None, configured: tuple[float, float]
) -> tuple[float, float]:
    """(warn, fail) for the swap follow rate of one audit.

    Why not a fixed 0.5: a model that half-uses a small tell follows a pasted one in 36–48 % of
    images — far above chance, yet under 0.5. The fail line is the smallest follow rate that a
    one-sided binomial test (level ``SWAP_ALPHA``) rejects against ``swap_chance``, the rate a
    tell-blind model reaches through its errors alone. The error rate is measured *on the pasted
    images* (1 − the share that kept their true class), not on clean ones: pasting a patch is
    also an occluder, and a tell-blind model's extra errors from it are not following. The
    number of trials is the number of images (pairs / (K − 1)): the K − 1 pastes into one image
    are not independent. The configured pair still bounds the line: it is never below ``warn``
    (a follow rate under a quarter is a small effect, whatever its p-value; clean models reached
    0.17 at most in calibration) and never above ``fail`` (0.5: the pasted tell wins for most
    images, the old fixed line — which also decides for K = 2, where every error is a follow
    and the test cannot separate them). Without ``n_classes`` the configured pair is used."""
    warn, cap = configured
    n_pairs = int(swap.get("n_pairs", 0) or 0)
    chance = swap_chance(float(swap.get("kept_true_class_rate", np.nan)), n_classes or 0)
    if not n_classes or n_pairs <= 0 or not np.isfinite(chance):
        return warn, cap
    n = max(1, int(round(n_pairs / (n_classes - 1))))
    # smallest x with P(X ≥ x) ≤ alpha, X ~ Binomial(n, chance)
    x = np.arange(n + 2)
    ok = binom.sf(x - 1, n, chance) <= SWAP_ALPHA
    critical = float(x[ok][0] / n) if ok.any() else float("inf")
    fail = float(min(cap, max(warn, critical)))
    return min(warn, fail), fail


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
    n_classes: int | None = None,
) -> list[Condition]:
    """Conditions from behavioural results and per-method tell scores (means over tell images).

    Methods in ``untrusted`` failed the randomisation sanity check: their conditions are shown
    but marked N/A, since their maps do not depend on the model. ``n_classes`` (the model's K)
    sets the swap condition's fail line by a binomial test (``swap_lines``)."""
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
        lines = swap_lines(behaviour["swap"], n_classes, t.swap_follow_rate)
        conds.append(Condition("tell swap", "swap_follow_rate", "behaviour", v, *lines))
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


def suspect_conditions(
    suspects: list, thresholds: Thresholds, n_classes: int | None = None
) -> list[Condition]:
    """Behavioural conditions on the top suspected tell found *without* annotations.

    Only a strong suspect is tested against the thresholds: the behaviour, not the picture, is
    the evidence, so a suspect that the model does not actually use cannot fail the audit."""
    strong = [s for s in suspects if s.found.strong]
    if not strong:
        return []
    top, t = strong[0], thresholds
    drop = top.removal.get("accuracy_drop", np.nan)
    follow = top.swap.get("follow_rate", np.nan) if top.swap else np.nan
    lines = swap_lines(top.swap or {}, n_classes, t.swap_follow_rate)
    return [
        Condition("suspected tell removal", "removal_accuracy_drop", "behaviour", drop,
                  *t.removal_accuracy_drop),
        Condition("suspected tell swap", "swap_follow_rate", "behaviour", follow, *lines),
    ]  # fmt: skip


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
