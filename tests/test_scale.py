"""Real architectures and the scale machinery: ResNet-18 / ViT end to end, Grad-CAM on
TorchScript, compact maps, one prediction pass, bad model outputs, devices, the time budget."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.auditing.audit_steps import AuditSteps
from leakaudit.auditing.budget import OtherSteps as _other_steps
from leakaudit.auditing.budget import (
    fill_seconds,
    make_plan,
    parse_duration,
    passes_per_image,
    stratified_sample,
)
from leakaudit.auditing.model_audit import audit_model
from leakaudit.auditing.verdict import NA, Thresholds
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.engines.work import compact
from leakaudit.errors import ConfigError, ModelOutputError
from leakaudit.evidence.behaviour import removal_test
from leakaudit.evidence.sanity import cascade_steps, parameterised_modules, randomisation_check
from leakaudit.explain import make_explainer
from leakaudit.explain.base import NotApplicable
from leakaudit.explain.gradcam import last_conv
from leakaudit.models.predict import predict_proba
from leakaudit.models.zoo import ResNet18, TinyViT, build
from leakaudit.runtime import resolve_device

SIZE = 32
METHODS = {"saliency": {}, "gradcam": {}, "lime": {"n_samples": 16, "n_segments": 8}}
QUICK = AuditSteps(discovery=False, sanity_images=3)


@pytest.fixture(scope="module")
def data():
    return poison(make_shapes(12, seed=0, size=SIZE, n_classes=3), TellSpec(size=4), seed=1)


def _audit(model, data, methods=METHODS, **kw):
    return audit_model(model, "m", data, methods, accuracy=float("nan"),
                       thresholds=Thresholds(), progress=kw.pop("progress", False),
                       checks=kw.pop("checks", QUICK), **kw)  # fmt: skip


def test_resnet18_is_a_resnet18() -> None:
    model = ResNet18(3)
    # 20 convs (17 + 3 downsample) + 20 BatchNorms + fc, as torchvision's resnet18
    assert len(parameterised_modules(model)) == 41
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.18e6, rel=0.01)
    assert last_conv(model) == "layer4.1.conv2"


def test_resnet18_audits_end_to_end(data) -> None:
    model = build("resnet18", 3, seed=0, width=8)
    audit = _audit(model, data)
    assert set(audit.per_sample["method"]) == set(METHODS)
    assert not audit.set_aside
    assert audit.verdict in ("clean", "leak", "inconclusive")
    # the deep model is randomised block by block: top, ¼, ½, ¾, all of its 41 modules
    steps = [st.n_randomised for st in audit.sanity["saliency"].steps]
    assert steps == [1, 11, 21, 31, 41]


def test_scripted_resnet_gets_gradcam_maps_in_an_audit(data) -> None:
    model = build("resnet18", 3, seed=0, width=4).eval()
    methods = {"gradcam": {}}
    eager = _audit(model, data, methods)
    scripted = _audit(torch.jit.script(model), data, methods)
    assert not scripted.set_aside and scripted.method_params["gradcam"]["layer"] == (
        "layer4.1"  # the block output (explain/gradcam.py, default_layer)
    )
    np.testing.assert_allclose(
        scripted.compact_maps["gradcam"].astype(np.float32),
        eager.compact_maps["gradcam"].astype(np.float32),
        atol=2e-3,
    )
    assert scripted.sanity["gradcam"].steps  # the randomisation cascade ran on the script too


def test_vit_sets_gradcam_aside_with_a_reason(data) -> None:
    model = build("vit_tiny", 3, seed=0, image_size=SIZE, patch=8, dim=32, depth=2, heads=2)
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())
    audit = _audit(model, data)
    assert "convolution" in audit.set_aside["gradcam"]
    assert "gradcam" not in set(audit.per_sample["method"])
    assert "gradcam" not in audit.sanity
    aside = [c for c in audit.conditions if c.name.startswith("gradcam: set aside")]
    assert len(aside) == 1 and aside[0].status == NA
    assert {"saliency", "lime"} <= set(audit.per_sample["method"])


def test_gradcam_on_torchscript_equals_eager_and_captum(data) -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(0)
    model = ResNet18(3, width=8).eval()
    x, t = data.images()[:4], data.labels()[:4]
    eager = make_explainer("gradcam", model).attribute(x, t).maps
    scripted = torch.jit.script(model)
    assert last_conv(scripted) == "layer4.1.conv2"
    script_maps = make_explainer("gradcam", scripted).attribute(x, t).maps
    np.testing.assert_allclose(script_maps, eager, atol=1e-5)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    ref = LayerGradCam(model, model.layer4[1]).attribute(  # the default layer
        xt, target=torch.from_numpy(t), relu_attributions=True
    )
    ref = LayerAttribution.interpolate(ref.detach(), (SIZE, SIZE), "bilinear")[:, 0].numpy()
    peak = ref.reshape(4, -1).max(1)[:, None, None]
    np.testing.assert_allclose(eager, ref / np.where(peak > 0, peak, 1), atol=1e-5)
    # a named layer inside a preprocessing wrapper around the scripted model
    from leakaudit.models.load import Preprocessed

    wrapped = Preprocessed(scripted, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    e = make_explainer("gradcam", wrapped, layer="layer3.0.conv1")
    assert e.params["layer"] == "model.layer3.0.conv1"
    assert e.attribute(x, t).maps.max() == pytest.approx(1.0)
    with pytest.raises(NotApplicable, match="not found"):
        make_explainer("gradcam", model, layer="no.such.layer")


def test_compact_maps_are_area_averages_in_float16() -> None:
    rng = np.random.default_rng(0)
    blocks = rng.random((2, 48, 48)).astype(np.float32)
    big = blocks.repeat(2, axis=1).repeat(2, axis=2)  # 96×96, each 2×2 block constant
    small = compact(big, side=48)
    assert small.dtype == np.float16 and small.shape == (2, 48, 48)
    want = blocks / blocks.reshape(2, -1).max(1)[:, None, None]
    np.testing.assert_allclose(small.astype(np.float32), want, atol=1e-3)
    assert compact(np.zeros((1, 10, 10), np.float32)).max() == 0  # all-zero stays zero


def test_audit_keeps_compact_maps_and_probabilities(data) -> None:
    torch.manual_seed(0)
    model = build("small_cnn", 3, seed=0, width=4)
    audit = _audit(model, data, {"saliency": {}})
    maps = audit.compact_maps["saliency"]
    assert maps.shape == (len(data), SIZE, SIZE) and maps.dtype == np.float16
    probs = predict_proba(model, data.images())
    rows = audit.per_sample
    np.testing.assert_allclose(rows["confidence"], probs.max(1), rtol=1e-6)
    np.testing.assert_allclose(rows["p_true"], probs[np.arange(len(data)), data.labels()], 1e-6)
    # a map kept compact is the full map (≤ 64 px: only float16 rounding)
    full = make_explainer("saliency", model).attribute(data.images(), data.labels()).maps
    np.testing.assert_allclose(maps.astype(np.float32), full, atol=1e-3)


class NaNOnBright(nn.Module):
    """NaN logits for images whose top-left pixel is bright: a known number of bad images."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = x.mean(dim=(2, 3))
        bright = x[:, 0, 0, 0] > 0.5
        return torch.where(bright[:, None], torch.full_like(logits, float("nan")), logits)


def test_non_finite_outputs_stop_the_audit_with_a_count(data) -> None:
    n_bad = int(sum(s.image[0, 0, 0] > 0.5 for s in data))
    assert 0 < n_bad < len(data)
    with pytest.raises(ModelOutputError, match=f"model 'm'.* {n_bad} of {len(data)} images"):
        _audit(NaNOnBright(), data, {"saliency": {}})


class TupleOut(nn.Module):
    def __init__(self, inner: nn.Module, as_int: bool = False) -> None:
        super().__init__()
        self.inner, self.as_int = inner, as_int

    def forward(self, x: torch.Tensor):
        y = self.inner(x)
        return (y.long(), y) if self.as_int else (y, y.detach() * 0)


def test_tuple_outputs_use_element_zero_and_int_outputs_are_refused(data) -> None:
    model = build("small_cnn", 3, seed=0, width=4).eval()
    plain = _audit(model, data, {"saliency": {}})
    tupled = _audit(TupleOut(model), data, {"saliency": {}})
    np.testing.assert_array_equal(plain.per_sample["pred"], tupled.per_sample["pred"])
    np.testing.assert_allclose(plain.per_sample["tell_mass"], tupled.per_sample["tell_mass"])
    with pytest.raises(ModelOutputError, match="int64"):
        _audit(TupleOut(model, as_int=True), data, {"saliency": {}})


def test_removal_with_given_predictions_matches_predicting_again(data) -> None:
    model = build("small_cnn", 3, seed=0, width=4).eval()
    preds = predict_proba(model, data.images()).argmax(1)
    assert removal_test(model, data.samples, predictions=preds) == removal_test(model, data.samples)


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_cascade_steps_and_same_final_state(data) -> None:
    assert cascade_steps(9) == list(range(1, 10))  # small model: one module per step
    assert cascade_steps(41) == [1, 11, 21, 31, 41]
    model = build("resnet18", 3, seed=0, width=4).eval()
    x, t = data.images()[:2], data.labels()[:2]
    blocks = randomisation_check(model, x, t, "saliency", seed=3)
    every = randomisation_check(model, x, t, "saliency", seed=3, per_module_max=100)
    assert len(blocks.steps) == 5 and len(every.steps) == 41
    assert blocks.final_spearman == every.final_spearman  # same weights at the end
    assert blocks.passed == every.passed


def test_budget_parsing_and_stratified_sample() -> None:
    assert parse_duration("15m") == 900 and parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90 and parse_duration(None) is None
    for bad in ("soon", "-5m", "0s"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_sample(labels, 20, seed=0)
    assert list(np.bincount(labels[idx])) == [12, 6, 2]
    assert np.array_equal(idx, np.sort(idx)) and len(set(idx)) == 20
    assert np.array_equal(idx, stratified_sample(labels, 20, seed=0))
    assert passes_per_image("lime", {"n_samples": 300}, (64, 64)) == (300, 0)
    assert passes_per_image("occlusion", {}, (64, 64)) == (1 + 15 * 15, 0)  # 8-px window, 4 px


def test_budget_samples_costly_methods_with_intervals(data) -> None:
    model = build("small_cnn", 3, seed=0, width=4).eval()
    methods = {"saliency": {}, "lime": {"n_samples": 64, "n_segments": 8}}
    plan = make_plan(model, data.images()[:4], methods, len(data), budget_s=1e-9)
    assert plan.methods["saliency"].n_planned == len(data)
    assert plan.methods["lime"].n_planned == 0  # nothing left: the minimum sample applies
    checks = AuditSteps(discovery=False, sanity_images=4, sanity_images_costly=2)
    audit = _audit(model, data, methods, budget_s=1e-9, checks=checks)
    assert audit.sanity["saliency"].n_images == 4 and audit.sanity["lime"].n_images == 2
    covered = audit.covered["lime"]
    assert len(covered) == 6 and "saliency" not in audit.covered  # 2 per class
    means = audit.method_means()
    assert means["lime"]["n"] == 6 and means["lime"]["sampled"] is True
    lo, hi = means["lime"]["tell_mass_ci95"]
    assert lo <= means["lime"]["tell_mass"] <= hi
    assert "tell_mass_ci95" not in means["saliency"]
    lime_maps = audit.compact_maps["lime"].astype(np.float32)
    done = np.zeros(len(data), bool)
    done[covered] = True
    assert np.isfinite(lime_maps[done]).all() and np.isnan(lime_maps[~done]).all()
    # header, one line per method, the other steps, the sanity check, and LIME's count when it
    # runs (last, on the time the other steps left)
    assert len(audit.plan) == 6
    assert "other steps" in audit.plan[3] and "sanity check" in audit.plan[3]
    assert "runs last" in audit.plan[2] and "left" in audit.plan[5] and "6 of 12" in audit.plan[5]


def test_budget_gives_costly_methods_the_time_really_left(data, monkeypatch) -> None:
    # the recorded 224-px audit overran its budget by 4 minutes because the other steps took
    # longer than planned: the costly methods now run last, sized on the time actually left
    import leakaudit.auditing.model_audit as ma

    model = build("small_cnn", 3, seed=0, width=4).eval()
    # 16 samples: 5 s covers every image of this tiny set many times over, even on a machine
    # busy with other jobs (64 did not, with two benchmarks running beside the tests)
    methods = {"saliency": {}, "lime": {"n_samples": 16, "n_segments": 8}}
    checks = AuditSteps(discovery=False, sanity=False)
    plenty = _audit(model, data, methods, budget_s=5.0, checks=checks)
    assert "lime" not in plenty.covered
    slow_ablation = ma.region_ablation

    def slow(*args, **kwargs):
        time.sleep(5.5)  # a step that takes longer than the plan said
        return slow_ablation(*args, **kwargs)

    monkeypatch.setattr(ma, "region_ablation", slow)
    late = _audit(model, data, methods, budget_s=5.0, checks=checks)
    assert len(late.covered["lime"]) == 6  # the budget is spent: the per-class minimum
    assert "runs last" in late.plan[2] and "0 s of the budget left: 6 of 12" in late.plan[-1]
    assert late.seconds["ablation"] >= 5.5


def test_budget_reserves_the_other_steps_first(data) -> None:
    model = build("small_cnn", 3, seed=0, width=4).eval()
    methods = {"saliency": {}, "lime": {"n_samples": 64, "n_segments": 8}}
    probe = data.images()[:4]
    free = make_plan(model, probe, methods, len(data), budget_s=3600.0)
    assert free.methods["lime"].n_planned == len(data)  # an hour covers everything
    taken = make_plan(model, probe, methods, len(data), 3600.0, lambda p: (3600.0, "all of it"))
    assert taken.reserved_s == 3600.0 and taken.methods["lime"].n_planned == 0
    assert taken.methods["saliency"].n_planned == len(data)  # cheap methods always cover all
    assert taken.lines()[-1].startswith("plan: other steps") and "all of it" in taken.lines()[-1]


def test_budget_reserve_counts_the_ablation_fill(data) -> None:
    # the recorded 224-px audit overran its budget partly because the reserve counted region
    # ablation's forward passes but not its blur fill (as slow as a forward pass at 224 px)
    model = build("small_cnn", 3, seed=0, width=4).eval()
    methods = {"saliency": {}}
    plan = make_plan(model, data.images()[:4], methods, len(data), budget_s=3600.0)
    quiet = {"behaviour": False, "discovery": False, "sanity": False}
    on = _other_steps(model, data, methods, AuditSteps(**quiet), True)(plan)
    off = _other_steps(model, data, methods, AuditSteps(ablation=False, **quiet), True)(plan)
    n_region = sum(bool(s.region.any()) for s in data)
    assert n_region > 0 and off[0] == 0.0
    assert on[0] > n_region * plan.forward_s  # the passes and the measured fill
    assert "ablation fill" in on[1]
    assert fill_seconds(data) > 0


def test_amp_lime_is_recorded_and_close(data) -> None:
    model = build("small_cnn", 3, seed=0, width=4).eval()
    x, t = data.images()[:3], data.labels()[:3]
    kw = {"n_samples": 32, "n_segments": 8}
    plain = make_explainer("lime", model, **kw)
    amp = make_explainer("lime", model, amp=True, **kw)
    assert "amp" not in plain.describe() and amp.describe()["amp"] is True
    a, b = plain.attribute(x, t).extras["weights"], amp.attribute(x, t).extras["weights"]
    ok = np.isfinite(a)
    assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.9  # bfloat16 forward, same ranking broadly


def test_vit_builder_rejects_bad_patch() -> None:
    with pytest.raises(ValueError, match="multiple"):
        TinyViT(3, image_size=30, patch=8)


def test_budget_times_lime_under_amp_at_the_autocast_rate(data, monkeypatch) -> None:
    # --amp makes LIME's forwards 3.2× faster on a CPU with AMX and slower where bfloat16 is
    # emulated: the plan times the autocast forward instead of costing it at float32's rate
    import leakaudit.auditing.budget as budget

    model = build("small_cnn", 3, seed=0, width=4).eval()
    monkeypatch.setattr(budget, "measure_amp_forward", lambda m, x: 0.5)
    plain = {"saliency": {}, "lime": {"n_samples": 64, "n_segments": 8}}
    fast = {"saliency": {}, "lime": {"n_samples": 64, "n_segments": 8, "amp": True}}
    off = make_plan(model, data.images()[:4], plain, len(data), budget_s=None)
    on = make_plan(model, data.images()[:4], fast, len(data), budget_s=None)
    assert off.amp_forward_s is None and "under --amp" not in off.lines()[0]
    assert on.amp_forward_s == 0.5 and "2.0 img/s under --amp" in on.lines()[0]
    assert on.methods["lime"].per_image_s == 64 * 0.5
    assert off.methods["lime"].per_image_s == pytest.approx(64 * off.forward_s)
    assert on.methods["saliency"].per_image_s == pytest.approx(on.backward_s)  # no autocast
    real = budget.Plan(1.0, 1.0, 4, None)  # the real timing: a positive rate, not a guess
    monkeypatch.undo()
    real.amp_forward_s = budget.measure_amp_forward(model, data.images()[:4])
    assert 0 < real.amp_forward_s < 1.0


def test_amp_on_the_cpu_warns_that_lime_loses_fidelity(data, capsys) -> None:
    # bfloat16 LIME ranked superpixels 0.94 against a full-precision reference where float32
    # gave 0.99 (docs/scale.md): asking for it must not pass silently
    model = build("small_cnn", 3, seed=0, width=4).eval()
    lime = {"lime": {"n_samples": 16, "n_segments": 8}}
    checks = AuditSteps(discovery=False, sanity=False, behaviour=False, ablation=False)
    audit = _audit(model, data, lime, amp=True, checks=checks, progress=True)
    assert "--amp on the CPU" in capsys.readouterr().err
    assert audit.method_params["lime"]["amp"] is True
    _audit(model, data, {"saliency": {}}, amp=True, checks=checks, progress=True)
    assert "--amp" not in capsys.readouterr().err  # saliency never runs under autocast
    _audit(model, data, lime, checks=checks, progress=True)
    assert "--amp" not in capsys.readouterr().err
