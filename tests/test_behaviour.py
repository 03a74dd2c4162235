"""Tell removal per class: a hand-written model that knows one class by its look and the other
only by its tell must show exactly that, and the worst-class condition must catch it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from leakaudit.auditing.verdict import FAIL, PASS, Thresholds, build_conditions
from leakaudit.data.samples import Sample
from leakaudit.data.tells import plant
from leakaudit.evidence.behaviour import removal_test
from leakaudit.evidence.discovery import wilson_lower

RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)


class LookOrTell(nn.Module):
    """Class 1 when the top-left pixel is pure red (the tell), else class 0 (bright or not)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = ((x[:, 0, 0, 0] > 0.9) & (x[:, 1, 0, 0] < 0.1) & (x[:, 2, 0, 0] < 0.1)).float()
        bright = (x[:, :, 8:, 8:].mean(dim=(1, 2, 3)) > 0.5).float()
        return torch.stack([2.0 * bright, 3.0 * red], dim=1)


def _samples(n: int) -> list[Sample]:
    out = []
    for i in range(n):
        for label, level, colour in ((0, 0.8, BLUE), (1, 0.2, RED)):
            img = np.full((16, 16, 3), level, np.float32)
            s = Sample(img, label, np.zeros((16, 16), bool), f"{label}-{i}")
            out.append(plant(s, (0, 0, 3, 3), colour))
    return out


def test_removal_per_class_known_answer():
    r = removal_test(LookOrTell(), _samples(20))
    assert r["accuracy_with_tell"] == 1.0 and r["accuracy_drop"] == 0.5
    assert r["per_class"][0]["accuracy_drop"] == 0.0  # known by its look
    assert r["per_class"][1]["accuracy_drop"] == 1.0  # known only by its tell
    assert r["per_class"][0]["drop_lower"] == 0.0
    assert r["worst_class"] == 1
    assert r["worst_class_drop_lower"] == wilson_lower(20, 20)


def test_worst_class_condition_fails_where_the_mean_only_dilutes():
    r = removal_test(LookOrTell(), _samples(20))
    conds = {c.name: c for c in build_conditions({"removal": r}, {}, 0.03, Thresholds())}
    assert conds["tell removal, worst class"].status == FAIL
    empty = removal_test(LookOrTell(), [])
    assert empty["n"] == 0 and np.isnan(empty["worst_class_drop_lower"])
    # the tell mask is known but nothing is drawn there: covering it changes nothing
    honest = [s.with_(image=np.where(s.tell[..., None], 0.5, s.image)) for s in _samples(20)]
    r2 = removal_test(LookOrTell(), [s.with_(tell=s.tell) for s in honest])
    c2 = {c.name: c for c in build_conditions({"removal": r2}, {}, 0.03, Thresholds())}
    assert c2["tell removal, worst class"].status == PASS
