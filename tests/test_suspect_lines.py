"""Which suspected tells can fail the audit, and against which lines (docs/validity.md, ninth
round): strong ones and weak colour-first ones are held, weak place-first ones are not; a weak
suspect fails on removal only through its lower bound; a swap whose control patch is followed as
often as the suspect's colour is not following the colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.auditing.conditions import swap_lines
from leakaudit.auditing.verdict import FAIL, PASS, WARN, Thresholds, build_conditions, verdict
from leakaudit.data.samples import Sample
from leakaudit.evidence.behaviour import control_colour, swap_test
from leakaudit.evidence.discovery import SuspectedTell
from leakaudit.evidence.suspects import Suspect, may_fail

RED, GREEN, GREY = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), 0.5


def _found(score: float, moves: bool) -> SuspectedTell:
    boxes = {0: (1, 1, 5, 5), 1: (8, 8, 12, 12)} if moves else {}
    return SuspectedTell((1, 1, 5, 5), RED, [2], 0.8, score, [0], {2: RED}, source="colour"
                         if moves else "hotspot", boxes=boxes)  # fmt: skip


def _suspect(score: float, moves: bool, drop: float, lower: float, follow: float) -> Suspect:
    removal = {"accuracy_drop": drop, "worst_class_drop_lower": lower}
    swap = {"n_pairs": 120, "follow_rate": follow, "kept_true_class_rate": 0.6,
            "control_follow_rate": 0.1}  # fmt: skip
    return Suspect(_found(score, moves), removal, swap, float("nan"))


def _rows(suspects: list[Suspect]) -> dict[str, object]:
    conds = build_conditions({}, {}, float("nan"), Thresholds(), n_classes=3, suspects=suspects)
    return {c.name: c for c in conds}


def test_weak_colour_suspects_are_held_and_weak_place_suspects_are_not():
    assert may_fail(_found(0.6, moves=False)) and may_fail(_found(0.6, moves=True))
    assert may_fail(_found(0.2, moves=True))
    assert not may_fail(_found(0.2, moves=False))
    assert not may_fail(_found(0.0, moves=True))  # score 0: nothing class-specific about it
    relied = _suspect(0.2, True, drop=0.4, lower=0.3, follow=0.1)
    rows = _rows([relied])
    assert rows["suspected tell removal, worst class"].status == FAIL
    assert verdict(list(rows.values())) == "leak" and relied.judged
    # the same numbers on a weak place-first box (one place, often the object): not held
    place = _suspect(0.2, False, drop=0.4, lower=0.3, follow=0.1)
    rows = _rows([place])
    assert not any(n.startswith("suspected") for n in rows) and not place.judged
    assert verdict(list(rows.values())) == "inconclusive"


def test_a_weak_suspects_raw_drop_only_warns_without_its_bound():
    # 0.4 of a few images, but the lower bound says it could be a handful of flips
    rows = _rows([_suspect(0.2, True, drop=0.4, lower=0.05, follow=0.1)])
    raw = rows["suspected tell removal"]
    assert raw.status == WARN and raw.fail == float("inf")
    assert rows["suspected tell removal, worst class"].status == PASS
    # a strong suspect keeps the raw line it was calibrated with
    rows = _rows([_suspect(0.6, True, drop=0.4, lower=0.05, follow=0.1)])
    assert rows["suspected tell removal"].status == FAIL


def test_the_rows_are_those_of_the_worst_held_suspect():
    unused = _suspect(0.7, True, drop=0.0, lower=0.0, follow=0.05)  # strong, looked at, unused
    relied = _suspect(0.3, True, drop=0.1, lower=0.05, follow=0.7)  # weak, followed
    rows = _rows([unused, relied])  # ranked as discovery ranks them: strong first
    assert rows["suspected tell swap"].value == 0.7 and rows["suspected tell swap"].status == FAIL
    assert relied.judged and not unused.judged
    rows = _rows([unused])
    assert rows["suspected tell swap"].status == PASS and unused.judged


def test_control_follow_rate_raises_the_swap_line_only():
    base = {"n_pairs": 120, "follow_rate": 0.5, "kept_true_class_rate": 0.6}
    _, uniform = swap_lines(base, 3, (0.25, 0.5))
    _, low = swap_lines({**base, "control_follow_rate": 0.05}, 3, (0.25, 0.5))
    _, high = swap_lines({**base, "control_follow_rate": 0.45}, 3, (0.25, 0.5))
    assert low == uniform  # under the uniform-error rate: changes nothing
    assert high > uniform and high > 0.5  # a patch of any colour is "followed" 45 %: not enough
    _, never = swap_lines({**base, "control_follow_rate": 1.0}, 3, (0.25, 0.5))
    assert never == float("inf")  # no follow rate beats a control followed every time
    _, two = swap_lines({**base, "control_follow_rate": 0.05}, 2, (0.25, 0.5))
    assert two == 0.5  # K = 2: the configured line stays the floor (lines only rise)


class AnyPatchIsClassTwo(nn.Module):
    """Class 2 whenever a saturated patch is anywhere, whatever its colour; else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = ((x - GREY).abs().amax(dim=(1, 2, 3)) > 0.3).float()
        return torch.stack([1 - patch, torch.zeros_like(patch), 5 * patch], dim=1)


class FollowsGreen(nn.Module):
    """Class 2 when a green patch is present, class 1 for a red one, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = ((x[:, 1] > 0.9) & (x[:, 0] < 0.1) & (x[:, 2] < 0.1)).flatten(1).any(1).float()
        r = ((x[:, 0] > 0.9) & (x[:, 1] < 0.1) & (x[:, 2] < 0.1)).flatten(1).any(1).float()
        return torch.stack([0.5 * torch.ones_like(g), 2 * r, 2 * g], dim=1)


def _grey(n: int) -> list[Sample]:
    img = np.full((16, 16, 3), GREY, np.float32)
    return [Sample(img, 0, np.zeros((16, 16), bool), f"g{i}", tell_box=(2, 2, 6, 6))
            for i in range(n)]  # fmt: skip


def test_control_colour_is_none_of_the_tested_colours_nor_the_surroundings():
    img = np.full((16, 16, 3), GREY, np.float32)
    c = control_colour(img, (2, 2, 6, 6), [RED, GREEN])
    assert c not in (RED, GREEN) and set(c) <= {0.0, 1.0}
    white = np.ones((16, 16, 3), np.float32)
    assert control_colour(white, (2, 2, 6, 6), []) == (0.0, 0.0, 0.0)
    grey = np.full((16, 16, 1), 0.9, np.float32)  # one channel: a one-channel corner
    assert len(control_colour(grey, (2, 2, 6, 6), [(0.0,)])) == 1


@pytest.mark.parametrize(("model", "follows_colour"), [(AnyPatchIsClassTwo(), False),
                                                       (FollowsGreen(), True)])  # fmt: skip
def test_a_model_that_answers_any_patch_is_not_following_the_colour(model, follows_colour):
    # a one-colour suspect (class 2's): every pair targets class 2, so a model whose paste
    # errors all go there follows at twice the uniform-error rate: only the control tells
    swap = swap_test(model, _grey(40), {2: GREEN}, control=True)
    assert swap["follow_rate"] == 1.0
    assert swap["control_follow_rate"] == (0.0 if follows_colour else 1.0)
    assert "control_follow_rate" not in swap_test(model, _grey(4), {2: GREEN})
    without = {k: v for k, v in swap.items() if k != "control_follow_rate"}
    assert swap["follow_rate"] >= swap_lines(without, 3, (0.25, 0.5))[1]  # uniform: "follows"
    _, fail = swap_lines(swap, 3, (0.25, 0.5))
    assert (swap["follow_rate"] >= fail) is follows_colour
