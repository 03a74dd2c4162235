"""Model-parameter randomisation sanity check for an attribution method (cascading, top down).

Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (NeurIPS): if an explanation barely
changes when the model's learnt weights are replaced by random ones, it cannot be telling us what
the model learnt — it is an edge detector of the input. Before an audit trusts "the model looks at
the tell", the method must pass this check on that model. The metric family is "MPRT" in Quantus
(Hedström et al. 2023); the code here is our own.

Procedure: on a deep copy of the model, re-initialise the parameterised modules from the output
side (reverse registration order), cumulatively; after every step recompute the maps for the same
images and targets and compare them with the original maps by

* Spearman rank correlation of the flattened maps, mean over images, and
* SSIM (Wang et al. 2004, via ``skimage.metrics.structural_similarity``) of min-max normalised
  maps, mean over images.

Steps: a small model (at most ``PER_MODULE_MAX`` parameterised modules, e.g. the demo's CNN with
9) is randomised one module per step. A deep one (a ResNet-18 has 62, a ViT dozens) is randomised
in blocks — the top module, then the top quarter, half, three quarters and all of the modules —
so the check costs 6 explanations of the sample instead of 63 while keeping the curve's shape
(Adebayo et al. plot per-block cascades for Inception too). Each module is re-initialised with
the same seed either way, so the fully randomised model, and hence the verdict, is the same.

Maps are compared in absolute value by default (Adebayo et al.'s "absolute" variant): the sign of
a randomised model's evidence is arbitrary and would otherwise make a trivial flip look like a
pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from leakaudit.data.samples import Dataset
from leakaudit.explain.base import Explainer
from leakaudit.explain.registry import make_explainer

# Pass if the mean rank correlation with the original maps, after *every* layer is randomised,
# is below this. Maps of unrelated models on the same image share only the image's structure;
# Adebayo et al. report rank correlations near 0–0.3 for gradients after full randomisation
# while input-only methods stay near 1. 0.5 means at most a quarter (0.5²) of the rank variance
# is shared: a method above that is mostly explaining the image, not the model.
DEFAULT_THRESHOLD = 0.5
PER_MODULE_MAX = 12  # above this many parameterised modules the cascade goes block by block
BLOCK_FRACTIONS = (0.25, 0.5, 0.75, 1.0)

ExplainerSpec = str | Callable[[nn.Module], Explainer]


@dataclass
class LayerStep:
    """Similarity to the original maps after randomising everything down to ``layer``."""

    layer: str
    spearman: float
    ssim: float
    n_randomised: int = 0  # parameterised modules randomised so far (cumulative)


def cascade_steps(n_modules: int, per_module_max: int = PER_MODULE_MAX) -> list[int]:
    """Cumulative module counts after each step: 1, 2, …, n for a small model; else the top
    module, then ¼, ½, ¾ and all of them (rounded up, duplicates dropped)."""
    if n_modules <= per_module_max:
        return list(range(1, n_modules + 1))
    ends = [1] + [int(np.ceil(f * n_modules)) for f in BLOCK_FRACTIONS]
    return sorted(set(ends))


@dataclass
class SanityResult:
    """Per-step similarities (output side first) and the verdict on the explanation method."""

    method: str
    steps: list[LayerStep]
    threshold: float
    passed: bool
    reason: str
    n_images: int
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def final_spearman(self) -> float:
        return self.steps[-1].spearman if self.steps else float("nan")

    @property
    def top_layer_spearman(self) -> float:
        return self.steps[0].spearman if self.steps else float("nan")


def parameterised_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules owning parameters directly, output side first (reverse registration order).

    Registration order is the forward order for ``nn.Sequential``-style models, which is what
    "top layer down" needs; it works for any ``nn.Module`` without knowing its architecture."""
    mods = [
        (name or "<root>", m)
        for name, m in model.named_modules()
        if any(True for _ in m.parameters(recurse=False))
    ]
    return mods[::-1]


@torch.no_grad()
def randomise_module(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters in place, seeded.

    Uses the module's ``reset_parameters`` (its constructor's initialisation, as Quantus does)
    when it has one; norm layers then also reset their running statistics. Any other parameter
    is redrawn from N(0, σ) with σ the parameter's own standard deviation (1/√fan-in when that
    is zero), so its scale stays plausible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()
            return
        for p in module.parameters(recurse=False):
            sd = float(p.std()) if p.numel() > 1 else 0.0
            if not np.isfinite(sd) or sd == 0:
                sd = 1.0 / np.sqrt(max(1, p.shape[-1] if p.dim() else 1))
            p.copy_(torch.randn_like(p) * sd)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _minmax(a: np.ndarray) -> np.ndarray:
    span = np.ptp(a)
    return (a - a.min()) / span if span > 0 else np.zeros_like(a)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    win = min(7, *a.shape)
    win -= 1 - win % 2  # odd
    if win < 3:
        return float("nan")
    return float(structural_similarity(_minmax(a), _minmax(b), data_range=1.0, win_size=win))


def map_similarity(
    orig: np.ndarray, other: np.ndarray, absolute: bool = True
) -> tuple[float, float]:
    """(mean Spearman, mean SSIM) over images, ignoring images where either map is constant."""
    if absolute:
        orig, other = np.abs(orig), np.abs(other)
    rho = [_spearman(x, y) for x, y in zip(orig, other, strict=True)]
    ssim = [_ssim(x, y) for x, y in zip(orig, other, strict=True)]
    mean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")  # noqa: E731
    return mean(np.asarray(rho)), mean(np.asarray(ssim))


def _explainer(spec: ExplainerSpec, model: nn.Module, params: dict[str, Any]) -> Explainer:
    return make_explainer(spec, model, **params) if isinstance(spec, str) else spec(model)


def randomisation_check(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    explainer: ExplainerSpec = "saliency",
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    absolute: bool = True,
    max_layers: int | None = None,
    explainer_params: dict[str, Any] | None = None,
    per_module_max: int = PER_MODULE_MAX,
) -> SanityResult:
    """Cascading randomisation of ``model`` (never modified) explained by ``explainer``.

    ``explainer`` is a registry name or a factory ``model -> Explainer``. Pass iff the mean
    Spearman correlation after the last step is below ``threshold``. ``max_layers`` stops the
    cascade early (for speed on deep nets); the verdict then concerns the partially randomised
    model and says so in ``reason``. Degenerate original maps (constant for every image: the
    model's output does not depend on its input, or the method returns nothing) fail: there is
    nothing to check and nothing to trust."""
    params = dict(explainer_params or {})
    images = np.asarray(images, dtype=np.float32)
    targets = np.asarray(targets)
    base = _explainer(explainer, model, params)
    method = getattr(base, "name", type(base).__name__)
    orig = base.attribute(images, targets).maps
    layers = parameterised_modules(model)
    if max_layers is not None:
        layers = layers[:max_layers]
    if all(np.ptp(m) == 0 for m in orig):
        return SanityResult(
            method,
            [],
            threshold,
            False,
            "original maps are constant: nothing to compare",
            len(images),
        )
    work = copy.deepcopy(model)
    by_name = dict(work.named_modules())
    steps = []
    done = 0
    for end in cascade_steps(len(layers), per_module_max):
        for i in range(done, end):  # module i always gets seed + i: same end state either way
            name = layers[i][0]
            randomise_module(by_name[name] if name != "<root>" else work, seed + i)
        done = end
        maps = _explainer(explainer, work, params).attribute(images, targets).maps
        rho, ssim = map_similarity(orig, maps, absolute=absolute)
        steps.append(LayerStep(layers[end - 1][0], rho, ssim, end))
    final = steps[-1].spearman if steps else float("nan")
    if not steps:
        passed, reason = False, "model has no parameters to randomise"
    elif np.isnan(final):
        # Randomised maps constant: they certainly changed, and depend on the model.
        passed, reason = True, "maps of the randomised model are constant (fully changed)"
    else:
        passed = final < threshold
        scope = "all" if max_layers is None else f"the top {done}"
        cmp = "<" if passed else "≥"
        reason = f"rank correlation after randomising {scope} layers {final:.2f} {cmp} {threshold}"
    return SanityResult(method, steps, threshold, passed, reason, len(images))


# ---------------------------------------------------------------- the audit's sanity step


def sanity_checks(
    model: nn.Module,
    data: Dataset,
    runs: list[tuple[str, dict[str, Any], int]],
    n_images: int,
    seed: int = 0,
) -> dict[str, SanityResult]:
    """Cascading randomisation per method on ``n_images`` images drawn with ``seed``; ``runs``
    is (method, parameters, images used) per method (``budget.sanity_runs``: LIME with fewer
    samples, and under a time budget the costly methods on fewer of the images — a sanity check
    asks whether maps change at all when the weights do, which a handful of images answers;
    Adebayo et al. used a few dozen in total)."""
    idx = np.random.default_rng(seed).permutation(len(data))[:n_images]
    images = np.stack([data[i].image for i in idx])
    targets = np.array([data[i].label for i in idx])
    out = {}
    for method, params, k in runs:
        out[method] = randomisation_check(
            model, images[:k], targets[:k], explainer=method, seed=seed, explainer_params=params
        )
    return out
