"""Name → explainer class. ``--methods`` takes these names."""

from __future__ import annotations

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
