"""Adding a method = one class with its traits + one registry line. A toy method registered at
run time is planned at its declared cost, capped by its declared sanity settings, listed with
its own option in ``leakaudit audit --help`` (which reaches its parameters), given ``--amp``,
audited and shown in the report: every consumer reads the traits from explain/registry.py."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from leakaudit.explain import registry
from leakaudit.explain.base import Attribution, CliOption, Explainer, MethodTraits

TOY_PASSES = 7


class Toy(Explainer):
    """Constant maps; costs ``passes`` forward passes per image."""

    name = "toy"
    reduction = "none"
    traits = MethodTraits(
        cost=lambda p, shape: (int(p["passes"]), 0),
        costly=True,
        amp=True,
        sanity_caps={"passes": 3},
        cli=(CliOption("--toy-passes", "passes", TOY_PASSES, "Toy passes per image."),),
    )

    def __init__(self, model: torch.nn.Module, passes: int = TOY_PASSES, amp: bool = False):
        super().__init__(model, passes=passes)

    def attribute(self, images: np.ndarray, targets: np.ndarray) -> Attribution:
        return Attribution(np.ones(images.shape[:3], np.float32), self.name, self.reduction)


@pytest.fixture
def toy() -> Iterator[type[Explainer]]:
    registry.register(Toy)
    try:
        yield Toy
    finally:
        registry.EXPLAINERS.pop("toy", None)


def test_registry_reports_the_toy_traits(toy) -> None:
    t = registry.traits("toy")
    assert t is Toy.traits and t.costly and t.amp and not t.layer
    assert registry.defaults("toy") == {"passes": TOY_PASSES, "amp": False}
    assert registry.passes_per_image("toy", {}, (64, 64)) == (TOY_PASSES, 0)
    assert registry.passes_per_image("toy", {"passes": 2}, (64, 64)) == (2, 0)
    assert "toy" in registry.costly() and "toy" in registry.amp_methods()
    assert "toy" not in registry.layer_methods()
    assert registry.sanity_params("toy", {}) == {"passes": 3}
    assert registry.sanity_params("toy", {"passes": 2}) == {"passes": 2}
    (opt,) = registry.cli_options(["toy"])["toy"]
    assert (opt.flag, opt.param, opt.default, opt.option_key) == (
        "--toy-passes", "passes", TOY_PASSES, "toy_passes"
    )  # fmt: skip
    maps = registry.make_explainer("toy", torch.nn.Identity()).attribute(
        np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, np.int64)
    )
    assert maps.maps.shape == (2, 4, 4)
    registry.EXPLAINERS.pop("toy")
    with pytest.raises(KeyError, match="unknown method"):
        registry.traits("toy")


def test_bundled_methods_declare_their_traits() -> None:
    from leakaudit.explain.lime import LIME_SAMPLES, SANITY_SAMPLES

    assert registry.costly() == ("smoothgrad", "integrated_gradients", "occlusion", "lime")
    assert registry.amp_methods() == ("occlusion", "lime")
    assert registry.layer_methods() == ("gradcam",)
    assert registry.traits("gradcam").needs
    assert registry.defaults("lime")["n_samples"] == LIME_SAMPLES == 500
    assert registry.passes_per_image("lime", {}, (64, 64)) == (LIME_SAMPLES, 0)
    assert registry.passes_per_image("integrated_gradients", {}, (64, 64)) == (0, 32)
    assert registry.passes_per_image("smoothgrad", {}, (64, 64)) == (0, 16)
    assert registry.passes_per_image("occlusion", {}, (64, 64)) == (1 + 15 * 15, 0)
    assert registry.passes_per_image("saliency", {}, (64, 64)) == (0, 1)
    assert registry.sanity_params("lime", {"n_samples": 1000}) == {"n_samples": SANITY_SAMPLES}
    assert registry.method_params(["lime"])["lime"]["n_samples"] == LIME_SAMPLES
    flags = {o.flag: o.default for opts in registry.cli_options().values() for o in opts}
    assert flags == {"--lime-samples": LIME_SAMPLES, "--layer": None}


def test_plan_reads_the_toy_cost(toy) -> None:
    """The budget plans the toy at its declared cost and samples it as a costly method."""
    from leakaudit.auditing import budget

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    model(torch.zeros(1, 3, 8, 8))
    probe = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    plan = budget.make_plan(model.eval(), probe, {"toy": {}, "saliency": {}}, 50, budget_s=1e-6)
    assert (plan.methods["toy"].forwards, plan.methods["toy"].backwards) == (TOY_PASSES, 0)
    assert plan.methods["toy"].n_planned < 50 == plan.methods["saliency"].n_planned
    assert budget.passes_per_image("toy", {"passes": 2}, (8, 8)) == (2, 0)


def test_sanity_step_reads_the_toy_caps(toy) -> None:
    from leakaudit.auditing import budget
    from leakaudit.auditing.audit_steps import AuditSteps

    runs = budget.sanity_runs({"toy": {"passes": 50}}, AuditSteps(), budgeted=False, n=4)
    assert [(m, p) for m, p, _ in runs] == [("toy", {"passes": 3})]


def test_help_lists_the_toy_option_and_it_reaches_the_method(toy) -> None:
    from click.testing import CliRunner

    from leakaudit.cli import main
    from leakaudit.cli_options import shared_options

    out = CliRunner().invoke(main, ["audit", "--help"]).output
    assert "--toy-passes" in out and "Toy passes per image." in out
    assert "last conv layer" not in out  # --layer's help names the block output now
    cli = {"toy_passes": 4, "lime_samples": 64}
    shared_options(cli, None, None, "toy", None)
    assert cli["method_options"] == {"toy_passes": 4} and cli["lime_samples"] == 64
    params = registry.method_params(["toy"], method_options=cli["method_options"])
    assert params == {"toy": {"passes": 4}}


def test_audit_options_read_the_toy_amp(toy) -> None:
    """``--amp`` reaches the methods that declare it, ``--layer`` those that take a layer."""
    from leakaudit.auditing import model_audit

    assert model_audit._with_options("toy", {}, amp=True, layer=None) == {"amp": True}
    assert model_audit._with_options("toy", {}, amp=False, layer="x") == {}


def test_toy_method_is_audited_and_reported(toy) -> None:
    """Through the public API: the toy runs, is scored, and its section is in the report."""
    import leakaudit
    from leakaudit.data.synthetic import make_shapes
    from leakaudit.report.render import render_html

    ds = make_shapes(12, seed=0, size=24, n_classes=2)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(24 * 24 * 3, 2)).eval()
    result = leakaudit.audit(model, ds, methods=["toy"], method_options={"toy_passes": 2},
                             discovery=False, sanity=False, ablation=False,
                             cache=False)  # fmt: skip
    audit = result.models["model"]
    assert audit.method_params["toy"]["passes"] == 2
    assert set(audit.per_sample["method"]) == {"toy"} and len(audit.per_sample) == 12
    assert "toy" in render_html(result)


def test_unknown_method_option_is_refused() -> None:
    from leakaudit.auditing.audit_options import AuditOptions
    from leakaudit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"method_options\.nope: no method declares it"):
        AuditOptions.in_memory(method_options={"nope": 1})
