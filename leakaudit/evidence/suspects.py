"""Suspected tells found without annotations, tested by what the model does with them.

Discovery (``discovery.py``) proposes boxes from attribution maps; here the top proposals are
covered (removal) and repainted (swap), and ranked by the behaviour they cause.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from leakaudit.data.samples import Dataset
from leakaudit.data.spill import SpilledStack
from leakaudit.evidence.behaviour import removal_test, swap_test
from leakaudit.evidence.discovery import (
    SuspectedTell,
    box_iou,
    discover_tells,
    moving_suspect_samples,
    suspected_tell_mask,
)
from leakaudit.evidence.discovery_view import discovery_view, to_full
from leakaudit.runtime import release_freed_memory


@dataclass
class Suspect:
    """A suspected tell found without annotations, and what the model did when it was tested."""

    found: SuspectedTell
    removal: dict[str, float]
    swap: dict[str, float]
    iou_with_known: float  # overlap with the annotated tell box, when one is known (else NaN)
    # set by ``verdict.build_conditions``: this suspect's tests are the audit's suspect rows
    judged: bool = False

    @property
    def may_fail(self) -> bool:
        """Whether its behaviour can fail the audit (see ``may_fail``)."""
        return may_fail(self.found)

    @property
    def evidence(self) -> float:
        """The stronger behavioural effect (accuracy drop on removal, swap follow rate), 0 when
        untested: strong suspects are ranked by what the model *does*, the picture only proposes
        them (two boxes on one tell can score alike; the one whose removal matters comes first)."""
        vals = [self.removal.get("accuracy_drop", np.nan), self.swap.get("follow_rate", np.nan)]
        vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
        return max(vals, default=0.0)


def may_fail(found: SuspectedTell) -> bool:
    """A suspect whose behaviour is held against the fail lines: every *strong* one, and a weak
    *colour-first* one (``moves``) with a score above 0 — a colour that the model looks at more
    in one class's images than the colour is found in the others', in a box per image outside
    the object. A weak *place-first* box is not held: it is one place in every image, and on
    clean models it often sits on the object, whose removal costs accuracy because the object
    is the evidence (docs/validity.md, false alarms). Why weak colour suspects are held at all:
    a tell that moves is looked at in fewer images than one that stays, so its score stays
    under the strong line even when the model relies on it (docs/validity.md, ninth round);
    the lines they are held to need more than a raw accuracy drop (``conditions``)."""
    return found.strong or (found.moves and found.score > 0)


def check_suspects(
    model: nn.Module,
    data: Dataset,
    maps: np.ndarray | SpilledStack,
    preds: np.ndarray,
    seed: int,
    top: int = 3,
) -> list[Suspect]:
    """Discover suspected tells from attribution maps, test the top ``top`` behaviourally, and
    rank them: strong ones first, by behavioural evidence, then by discovery score.

    ``maps``: (N, h, w), every image's map at full size or reduced (``discovery_view``: discovery
    works on at most 64 px and 2 000 images; the tests run on the full-size images). Discovery
    never sees the tell annotations; removal covers the suspected box on the affected classes'
    images, swap paints the other affected classes' colours into it."""
    view = discovery_view(data, maps, seed)
    found = discover_tells(
        view.maps, view.images, data.labels()[view.index], preds[view.index], view.regions,
        seed=seed,
    )  # fmt: skip
    release_freed_memory(slack=0)  # discovery's ~0.4 GB of temporaries: free, hand them back
    out = []
    for sus in [to_full(s, view) for s in found.suspects[:top]]:
        if sus.moves:  # colour-first: a box per image (discovery.moving_suspect_samples)
            hit, affected, swapped = moving_suspect_samples(data.samples, sus)
            removal = removal_test(model, affected, predictions=preds[hit])
            swap = (swap_test(model, swapped, dict(sus.colours), control=may_fail(sus))
                    if sus.colours else {})  # fmt: skip
            pairs = [(sus.boxes[i], data[i].tell_box) for i in hit if data[i].tell_box]
            iou = float(np.mean([box_iou(a, b) for a, b in pairs])) if pairs else float("nan")
            out.append(Suspect(sus, removal, swap, iou))
            continue
        mask = suspected_tell_mask(sus, view.full_shape)
        hit = [i for i, s in enumerate(data) if s.label in sus.classes]
        affected = [data.samples[i] for i in hit]
        removal = removal_test(model, affected, mask=mask, predictions=preds[hit])
        swap = (swap_test(model, list(data), dict(sus.colours), box=sus.box,
                          control=may_fail(sus)) if sus.colours else {})  # fmt: skip
        known = [s.tell_box for s in data if s.tell_box is not None and s.label in sus.classes]
        iou = float(np.mean([box_iou(sus.box, b) for b in known])) if known else float("nan")
        out.append(Suspect(sus, removal, swap, iou))
    return rank_suspects(out)


def rank_suspects(suspects: list[Suspect]) -> list[Suspect]:
    """Strong suspects first, by behavioural evidence, then by discovery score (stable)."""
    return sorted(suspects, key=lambda s: (not s.found.strong, -s.evidence, -s.found.score))
