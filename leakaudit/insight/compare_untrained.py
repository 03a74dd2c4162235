"""View 7: trained vs untrained — every view for the model and a freshly initialised copy.

An untrained net's filters, class visualisations and pixel influence are structured noise; what
training added is the difference. A view that looks the same for both (e.g. a "class picture"
that is only the regulariser's texture) says nothing about the model. The copy re-initialises
every parameterised module with its own constructor's initialisation, seeded
(``leakaudit.evidence.sanity.randomise_module``, the same re-initialisation the randomisation
check uses).
"""

from __future__ import annotations

import copy

import numpy as np
from torch import nn

from leakaudit.evidence.sanity import parameterised_modules, randomise_module

# Offset so the re-init never replays the seed a model was built with (build(seed=s) draws the
# first layer from torch.manual_seed(s), which is what a re-init with seed s would redraw).
_SEED_BASE = 7_919


def untrained_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy with every parameterised module re-initialised, seeded per module."""
    fresh = copy.deepcopy(model)
    for i, (_, module) in enumerate(reversed(parameterised_modules(fresh))):
        randomise_module(module, _SEED_BASE + 1000 * seed + i)
    fresh.eval()
    return fresh


def view_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 − Pearson correlation of two views of the same shape: 0 the same picture up to scale,
    about 1 unrelated, 2 inverted. Scale-free, because untrained weights have another scale."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"views differ in shape: {np.shape(a)} vs {np.shape(b)}")
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float("nan") if den == 0 else 1.0 - float((x * y).sum()) / den
