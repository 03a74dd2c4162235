"""Name → explainer class, and each method's traits. ``--methods`` takes these names.

Adding a method: one file (an ``Explainer`` subclass with ``name``, ``reduction`` and
``traits``) and one line in ``EXPLAINERS`` (or ``register`` at run time). Everything else reads
the traits from here: ``traits(name)``, ``passes_per_image`` (the budget's cost model),
``costly`` / ``amp_methods`` / ``layer_methods``, ``sanity_params`` (the randomisation check's
caps), ``cli_options`` (the CLI's per-method options and their defaults).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from leakaudit.explain.base import CliOption, Explainer, MethodTraits
from leakaudit.explain.gradcam import GradCam
from leakaudit.explain.input_x_gradient import InputXGradient
from leakaudit.explain.integrated_gradients import IntegratedGradients
from leakaudit.explain.lime import LIME_BASELINE, LIME_SAMPLES, LIME_SEGMENTS, Lime
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


def register(cls: type[Explainer], name: str | None = None) -> type[Explainer]:
    """Add a method at run time (``name`` default: ``cls.name``); usable as a decorator."""
    EXPLAINERS[name or cls.name] = cls
    return cls


def _cls(name: str) -> type[Explainer]:
    if name not in EXPLAINERS:
        raise KeyError(f"unknown method {name!r}; known: {sorted(EXPLAINERS)}")
    return EXPLAINERS[name]


def make_explainer(name: str, model: nn.Module, **params: Any) -> Explainer:
    return _cls(name)(model, **params)


def traits(name: str) -> MethodTraits:
    """The method's declared traits (``MethodTraits``)."""
    return _cls(name).traits


def defaults(name: str) -> dict[str, Any]:
    """The method's parameters and their defaults, from its constructor."""
    return _cls(name).defaults()


def passes_per_image(
    name: str, params: Mapping[str, Any], shape: tuple[int, int]
) -> tuple[int, int]:
    """(forward-only passes, forward+backward passes) one image costs under ``name`` with
    ``params`` (missing ones take the method's defaults)."""
    return traits(name).cost({**defaults(name), **params}, tuple(shape))


def costly(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The costly methods among ``names`` (default: all registered), in their order."""
    return tuple(n for n in (EXPLAINERS if names is None else names) if traits(n).costly)


def amp_methods() -> tuple[str, ...]:
    """Methods that take ``amp=True``."""
    return tuple(n for n in EXPLAINERS if traits(n).amp)


def layer_methods() -> tuple[str, ...]:
    """Methods that take ``layer=`` (``--layer``)."""
    return tuple(n for n in EXPLAINERS if traits(n).layer)


def sanity_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` for the randomisation check: each declared cap applied (LIME: at most
    ``SANITY_SAMPLES`` samples), the method's default standing in for a missing value."""
    out = dict(params)
    base = defaults(name)
    for key, cap in traits(name).sanity_caps.items():
        out[key] = min(int(out.get(key, base[key])), cap)
    return out


def cli_options(names: Sequence[str] | None = None) -> dict[str, tuple[CliOption, ...]]:
    """Each method's declared CLI options (only methods that declare some)."""
    names = list(EXPLAINERS) if names is None else list(names)
    return {n: traits(n).cli for n in names if traits(n).cli}


def method_params(
    methods: Sequence[str],
    *,
    lime_samples: int = LIME_SAMPLES,
    lime_segments: int = LIME_SEGMENTS,
    lime_baseline: str = LIME_BASELINE,
    seed: int = 0,
    method_options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each method's parameters from the run-wide options: the one place they are built (the
    CLI and API audit, the demo, the power sweep), so the same options give the same cache keys
    and parameter records everywhere. ``method_options``: values of options that methods
    declare themselves (``CliOption.option_key`` → value, e.g. a plugin's ``--toy-passes``);
    a parameter nobody set keeps the method's default (and stays out of the cache key)."""
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    if "lime" in out:
        out["lime"] = {"n_samples": lime_samples, "n_segments": lime_segments,
                       "baseline": lime_baseline, "seed": seed}  # fmt: skip
    for m in out:
        for opt in traits(m).cli:
            value = (method_options or {}).get(opt.option_key)
            if value is not None:
                out[m][opt.param] = value
    return out


def option_keys() -> dict[str, CliOption]:
    """Every method-declared option by its key (``lime_samples``, ``layer``, ``toy_passes``)."""
    return {o.option_key: o for opts in cli_options().values() for o in opts}
