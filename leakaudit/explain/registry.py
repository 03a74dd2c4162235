"""Name → explainer class. ``--methods`` takes these names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from leakaudit.explain.base import Explainer
from leakaudit.explain.gradcam import GradCam
from leakaudit.explain.input_x_gradient import InputXGradient
from leakaudit.explain.integrated_gradients import IntegratedGradients
from leakaudit.explain.lime import Lime
from leakaudit.explain.occlusion import Occlusion
from leakaudit.explain.saliency import Saliency
from leakaudit.explain.smoothgrad import SmoothGrad

EXPLAINERS: dict[str, type[Explainer]] = {
    "saliency": Saliency,
    "smoothgrad": SmoothGrad,
    "input_x_gradient": InputXGradient,
    "integrated_gradients": IntegratedGradients,
    "gradcam": GradCam,
    "occlusion": Occlusion,
    "lime": Lime,
}


def make_explainer(name: str, model: nn.Module, **params: Any) -> Explainer:
    if name not in EXPLAINERS:
        raise KeyError(f"unknown method {name!r}; known: {sorted(EXPLAINERS)}")
    return EXPLAINERS[name](model, **params)


def method_params(
    methods: Sequence[str],
    *,
    lime_samples: int = 500,
    lime_segments: int = 50,
    lime_baseline: str = "blur",
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Each method's parameters from the run-wide options: the one place they are built (the
    CLI and API audit, the demo, the power sweep), so the same options give the same cache keys
    and parameter records everywhere. Methods other than LIME use their defaults."""
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    if "lime" in out:
        out["lime"] = {"n_samples": lime_samples, "n_segments": lime_segments,
                       "baseline": lime_baseline, "seed": seed}  # fmt: skip
    return out
