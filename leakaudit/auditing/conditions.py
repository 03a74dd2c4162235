"""The verdict's conditions as one declarative list: what each measures, how, and its lines.

Each ``ConditionSpec`` is one threshold kind (the ``[thresholds]`` key of a config): its
evidence kind, default warn/fail lines, a one-line description and how it is measured (the
README table in docs/methods.md and the report's legend are written from these), and the
``Check``s that turn an audit's ``Evidence`` into condition rows. ``verdict.Thresholds`` takes
its keys and defaults from ``CONDITIONS``; ``verdict.build_conditions`` runs every check. Adding
a condition = one ``ConditionSpec`` + one ``register`` call (README, "Adding a metric / a
condition").

Thresholds are *not* tuned to the demo: each is a statement a reviewer can check ("the tell is
the single most important region in most images", "covering 2 % of the pixels costs 20 points
of accuracy"), and the README's calibration table shows where clean and poisoned models fall
over many seeds, tell colours, sizes and positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.stats import binom

Scope = Literal["tell", "method", "suspect", "model"]
# the order conditions are listed in: known tell, each method, the top suspect, the whole model
SCOPES: tuple[Scope, ...] = ("tell", "method", "suspect", "model")


@dataclass(frozen=True)
class Evidence:
    """What one audit measured, as the conditions read it.

    ``methods``: per-method means under their summary keys (``model_audit.summarise``);
    ``suspect``: the suspected tell being judged (``suspects.Suspect``; one that ``may_fail``)
    or None."""

    behaviour: dict[str, dict[str, float]] = field(default_factory=dict)
    methods: dict[str, dict[str, float]] = field(default_factory=dict)
    tell_area: float = float("nan")
    n_classes: int | None = None
    suspect: Any = None
    ablation: dict[str, Any] = field(default_factory=dict)


# (evidence, method; "" outside the method scope) → the value, or None: not measured, no row
Measure = Callable[[Evidence, str], "float | None"]
# (evidence, configured (warn, fail)) → the lines of this audit
Lines = Callable[[Evidence, tuple[float, float]], tuple[float, float]]


@dataclass(frozen=True)
class Check:
    """One condition row: ``name`` (``{method}`` is filled in for the method scope)."""

    name: str
    scope: Scope
    measure: Measure
    lines: Lines | None = None  # None: the configured (warn, fail)


@dataclass(frozen=True)
class ConditionSpec:
    """One threshold kind and the checks it judges. ``fail = inf``: the kind only warns."""

    kind: str
    evidence: Literal["behaviour", "attribution"]
    warn: float
    fail: float
    description: str  # one line: what the value is
    measured: str  # how it is measured and why the lines are where they are (docs, legend)
    checks: tuple[Check, ...]
    lines_note: str = ""  # the docs' warn / fail cell when the lines are computed per audit
    # where a configured warn/fail line means something: a rate or share cannot pass 1, and a
    # line under 0 flags every model (a negative line once turned a warn-only check into LEAK)
    line_range: tuple[float, float] = (0.0, 1.0)


# ---------------------------------------------------------------- how values are measured

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
    are not independent. The line is never below ``warn`` (a follow rate under a quarter is a
    small effect, whatever its p-value; clean models reached 0.17 at most in calibration).
    Where the test cannot decide — K = 2, where every error is a follow, or too few images for
    any follow rate to reject — the configured ``fail`` (0.5, the old fixed line: the pasted tell
    wins for most images) is the line. Where it can, it is not capped at ``fail``: a tell-blind
    model whose pastes hide the object errs often, and a cap under the binomial line failed
    such a clean model (docs/validity.md, seventh round). Without ``n_classes`` the configured
    pair is used.

    Where the test also pasted a control colour into the same boxes (``swap_test(control=True)``,
    suspected tells), the line is also never below the one the same test puts against the rate
    at which the control copy is "followed" (for any K), and a control no follow rate can beat
    leaves the swap unable to fail: errors that a patch of *any* colour pushes towards the
    target class are not following its colour. A single-colour suspect shows why: all its pairs
    target one class, so a model whose every paste error goes there (a blob read as a platelet)
    follows at twice the uniform rate (docs/validity.md, ninth round). Lines only rise by it."""
    warn, cap = configured
    n_pairs = int(swap.get("n_pairs", 0) or 0)
    chance = swap_chance(float(swap.get("kept_true_class_rate", np.nan)), n_classes or 0)
    if not n_classes or n_pairs <= 0 or not np.isfinite(chance):
        return warn, cap
    n = max(1, int(round(n_pairs / (n_classes - 1))))
    line = _binomial_line(n, chance)
    fail = max(warn, line) if n_classes >= 3 and line <= 1 else cap
    control = float(swap.get("control_follow_rate", np.nan))
    if np.isfinite(control):
        beaten = _binomial_line(n, control)
        fail = max(fail, beaten) if beaten <= 1 else float("inf")
    return min(warn, fail), float(fail)


def _binomial_line(n: int, chance: float) -> float:
    """Smallest x/n with P(X ≥ x) ≤ ``SWAP_ALPHA``, X ~ Binomial(n, chance); inf if none."""
    x = np.arange(n + 1)
    ok = binom.sf(x - 1, n, float(np.clip(chance, 0.0, 1.0))) <= SWAP_ALPHA
    return float(x[ok][0] / n) if ok.any() else float("inf")


def excess_mass(mass: float, area: float) -> float:
    """How much of the attribution the tell holds beyond what its area earns by chance."""
    if not (np.isfinite(mass) and np.isfinite(area)) or area >= 1:
        return float("nan")
    return (mass - area) / (1 - area)


def _behaviour(test: str, key: str) -> Measure:
    """A known-tell behaviour result, when that test ran."""
    return lambda e, _m: e.behaviour[test].get(key, np.nan) if test in e.behaviour else None


def _suspect_drop(e: Evidence, _m: str) -> float | None:
    return None if e.suspect is None else e.suspect.removal.get("accuracy_drop", np.nan)


def _suspect_class_drop(e: Evidence, _m: str) -> float | None:
    return None if e.suspect is None else e.suspect.removal.get("worst_class_drop_lower", np.nan)


def _suspect_drop_lines(e: Evidence, configured: tuple[float, float]) -> tuple[float, float]:
    """A weak suspect's raw accuracy drop only warns: it has no bound for its few images (a
    clean model lost 0.15 of 20 when a box beside a small cell was covered; docs/validity.md,
    ninth round), so a weak suspect fails on removal through the worst-class lower bound."""
    weak = e.suspect is not None and not e.suspect.found.strong
    return (configured[0], float("inf")) if weak else configured


def _suspect_follow(e: Evidence, _m: str) -> float | None:
    if e.suspect is None:
        return None
    return e.suspect.swap.get("follow_rate", np.nan) if e.suspect.swap else np.nan


def _known_swap_lines(e: Evidence, configured: tuple[float, float]) -> tuple[float, float]:
    return swap_lines(e.behaviour.get("swap", {}), e.n_classes, configured)


def _suspect_swap_lines(e: Evidence, configured: tuple[float, float]) -> tuple[float, float]:
    return swap_lines((e.suspect.swap if e.suspect is not None else None) or {}, e.n_classes,
                      configured)  # fmt: skip


def _top_rate(e: Evidence, m: str) -> float:
    return e.methods[m].get("tell_top_rate", np.nan)


def _mass_excess(e: Evidence, m: str) -> float:
    return excess_mass(e.methods[m].get("tell_mass", np.nan), e.tell_area)


def _retained(e: Evidence, _m: str) -> float | None:
    return e.ablation.get("retained", np.nan) if e.ablation else None


# ---------------------------------------------------------------- the list

CONDITIONS: dict[str, ConditionSpec] = {}


def register(spec: ConditionSpec) -> ConditionSpec:
    """Add a condition kind (its default lines join ``Thresholds``); the name must be new."""
    if spec.kind in CONDITIONS:
        raise ValueError(f"condition kind {spec.kind!r} is already registered")
    CONDITIONS[spec.kind] = spec
    return spec


for _spec in (
    ConditionSpec(
        "removal_accuracy_drop", "behaviour", 0.10, 0.20,
        "accuracy lost when the tell is covered by a neutral local fill",
        "accuracy drop when the tell (or the judged suspect, found without annotations) is "
        "covered by the median colour of the pixels around it; covering ~2 % of the pixels "
        "should not cost a tell-blind model anything, 20 points is a large, causal loss (a weak "
        "suspect's drop only warns: it fails through the worst-class lower bound)",
        (Check("tell removal", "tell", _behaviour("removal", "accuracy_drop")),
         Check("suspected tell removal", "suspect", _suspect_drop, _suspect_drop_lines)),
    ),
    ConditionSpec(
        "removal_class_drop", "behaviour", 0.10, 0.20,
        "the same, in the worst class, at its 95 % lower bound (Wilson)",
        "the same drop in the class that loses most, at its 95 % lower bound (Wilson, on the net "
        "share of the class that covering breaks): a model may know all classes but one by their "
        "look and that one only by its tell; the lower bound keeps a small class from failing on "
        "a few flips",
        (Check("tell removal, worst class", "tell",
               _behaviour("removal", "worst_class_drop_lower")),
         Check("suspected tell removal, worst class", "suspect", _suspect_class_drop)),
    ),
    ConditionSpec(
        "swap_follow_rate", "behaviour", 0.25, 0.50,
        "share of images predicted as the class whose tell colour was pasted in",
        "share of images predicted as the class whose tell colour was painted into the tell box "
        "(every other class tried; the same for the judged suspect); a tell-blind model "
        "follows only by error, at about (1 − kept-class rate)/(K − 1) — for a suspect, or at "
        "the rate a control colour pasted into the same boxes is 'followed', whichever is "
        "larger — and the fail line is where a one-sided binomial test (α = 0.001) rejects it",
        (Check("tell swap", "tell", _behaviour("swap", "follow_rate"), _known_swap_lines),
         Check("suspected tell swap", "suspect", _suspect_follow, _suspect_swap_lines)),
        lines_note="0.25 / binomial line (≥ 0.25; 0.50 where it cannot decide: K = 2, few images)",
    ),
    ConditionSpec(
        "tell_top_rate", "attribution", 0.25, 0.50,
        "share of images whose top-attributed pixel/superpixel lands on the tell",
        "share of tell-bearing images whose top-attributed region (one pixel for gradient maps, "
        "the highest-weighted superpixel for LIME) overlaps the tell by at least half of the "
        "smaller of the two: \"the tell is the single most important region in most images\"",
        (Check("{method}: top on tell", "method", _top_rate),),
    ),
    ConditionSpec(
        "tell_mass_excess", "attribution", 0.15, 0.30,
        "positive attribution on the tell beyond its area share: (m − a)/(1 − a)",
        "positive attribution on the tell beyond its area share a, (m − a)/(1 − a): independent "
        "of the tell's size, 0 at chance, 1 when all evidence is on the tell",
        (Check("{method}: tell mass", "method", _mass_excess),),
    ),
    # Region ablation is evidence, not a verdict by itself: context can honestly carry class
    # information (e.g. cell crops whose scale differs by class), so it only warns by default.
    ConditionSpec(
        "ablation_retained", "behaviour", 0.5, float("inf"),
        "share of above-chance accuracy kept with the object removed",
        "share of above-chance accuracy the model keeps when the annotated object is removed; "
        "warns only: context can honestly carry class information (e.g. cell-crop scale)",
        (Check("object removed", "model", _retained),),
        line_range=(0.0, float("inf")),  # a share that can exceed 1 (better without the object)
    ),
):  # fmt: skip
    register(_spec)


def conditions_table() -> str:
    """The docs' table of conditions (docs/methods.md), written from ``CONDITIONS``."""
    rows = [
        "| kind | conditions | evidence | warn / fail | what is measured, and why these lines |",
        "|---|---|---|---|---|",
    ]
    for s in CONDITIONS.values():
        names = ", ".join(c.name.replace("{method}", "*method*") for c in s.checks)
        lines = s.lines_note or f"{s.warn:.2f} / " + ("—" if s.fail == float("inf") else
                                                      f"{s.fail:.2f}")  # fmt: skip
        rows.append(f"| `{s.kind}` | {names} | {s.evidence} | {lines} | {s.measured} |")
    return "\n".join(rows) + "\n"
