"""Model loading: TorchScript and state_dict + arch load; pickled modules and mismatches refused."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.errors import ConfigError, ModelLoadError
from leakaudit.models.load import (
    ModelSpec,
    Preprocessed,
    check_output_width,
    load_model,
    read_checkpoint_meta,
    save_checkpoint,
)
from leakaudit.models.zoo import SmallCNN

ARCH_SRC = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, n_classes=3, hidden=4):
            super().__init__()
            self.conv = nn.Conv2d(3, hidden, 3, padding=1)
            self.head = nn.Linear(hidden, n_classes)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=(2, 3)))
    """
)


@pytest.fixture
def arch_file(tmp_path):
    p = tmp_path / "tiny_arch.py"
    p.write_text(ARCH_SRC)
    return p


def _tiny(arch_file, **kw) -> nn.Module:
    ns: dict = {}
    exec(compile(arch_file.read_text(), str(arch_file), "exec"), ns)
    torch.manual_seed(0)
    return ns["Tiny"](**kw)


pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_torchscript_loads(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(3, width=4).eval()
    p = tmp_path / "m.ts"
    torch.jit.trace(model, X).save(str(p))
    loaded = load_model(p)
    torch.testing.assert_close(loaded(X), model(X))


def test_state_dict_with_file_and_module_arch(tmp_path, arch_file, monkeypatch):
    model = _tiny(arch_file, n_classes=5, hidden=6).eval()
    p = tmp_path / "sd.pt"
    torch.save(model.state_dict(), p)
    a = load_model(p, arch=f"{arch_file}:Tiny", arch_kwargs={"hidden": 6}, n_classes=5)
    torch.testing.assert_close(a(X), model(X))
    monkeypatch.syspath_prepend(str(arch_file.parent))
    b = load_model(p, arch="tiny_arch:Tiny", arch_kwargs={"hidden": 6, "n_classes": 5})
    torch.testing.assert_close(b(X), model(X))
    with pytest.raises(ModelLoadError, match=r"sd\.pt.*does not fit"):
        load_model(p, arch="tiny_arch:Tiny", arch_kwargs={"hidden": 7}, n_classes=5)
    with pytest.raises(ModelLoadError, match=r"sd\.pt.*does not fit"):
        load_model(p, arch="small_cnn", n_classes=5)
    with pytest.raises(ModelLoadError, match="arch"):
        load_model(p)
    with pytest.raises(ModelLoadError, match=r"not an nn\.Module"):
        load_model(p, arch="tiny_arch:torch")
    with pytest.raises(ModelLoadError, match="cannot import"):
        load_model(p, arch="no_such_module_xyz:Tiny")


def test_registry_arch(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(4, width=4).eval()
    p = tmp_path / "zoo.pt"
    torch.save(model.state_dict(), p)
    loaded = load_model(p, arch="small_cnn", arch_kwargs={"width": 4}, n_classes=4)
    torch.testing.assert_close(loaded(X), model(X))


def test_pickled_module_is_refused(tmp_path, arch_file):
    p = tmp_path / "whole.pt"
    torch.save(SmallCNN(3, width=4), p)
    with pytest.raises(ModelLoadError, match="TorchScript") as err:
        load_model(p, arch="small_cnn")
    assert "whole.pt" in str(err.value) and "arbitrary code" in str(err.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match=r"junk\.pt"):
        load_model(junk, arch="small_cnn")


def test_output_width_mismatch(tmp_path):
    model = SmallCNN(3, width=4)
    assert check_output_width(model, ModelSpec(input_size=32), 3) == 3
    with pytest.raises(ModelLoadError, match="outputs 3 scores but the dataset has 4 classes"):
        check_output_width(model, ModelSpec(path="m.pt"), 4)


def test_save_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = SmallCNN(3, width=4).eval()
    p = tmp_path / "out" / "model.pt"
    card = save_checkpoint(
        model,
        "small_cnn",
        {"width": 4},
        ["a", "b", "c"],
        {"mean": (0.5, 0.5, 0.5), "std": None},
        {"val_accuracy": np.float64(0.9), "loss": float("nan")},
        p,
        seed=3,
    )
    raw = torch.load(p, weights_only=True)  # must be plain types + tensors only
    assert raw["classes"] == ["a", "b", "c"]
    loaded = load_model(p)
    torch.testing.assert_close(loaded(X), model(X))
    info = json.loads(card.read_text())
    assert info["arch"] == "small_cnn" and info["seed"] == 3 and info["metrics"]["loss"] is None
    assert read_checkpoint_meta(p)["metrics"]["val_accuracy"] == pytest.approx(0.9)


def test_spec_preprocess_matches_wrapper():
    spec = ModelSpec(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), channel_order="BGR")
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    inner = nn.Identity()
    wrapped = spec.wrap(inner)
    assert isinstance(wrapped, Preprocessed)
    got = wrapped(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, spec.preprocess(images), rtol=1e-5, atol=1e-6)
    assert ModelSpec().wrap(inner) is inner
    with pytest.raises(ConfigError):
        ModelSpec(channel_order="RBG")
    with pytest.raises(ConfigError, match="size=16"):
        ModelSpec(input_size=16).preprocess(images)


def test_fit_early_stopping_and_checkpoint(tmp_path):
    from leakaudit.data.samples import Dataset, Sample
    from leakaudit.models.fit import fit

    rng = np.random.default_rng(0)
    samples = []
    for k in range(40):
        label = k % 2
        img = (rng.random((16, 16, 3)) * 0.5 + 0.5 * label).astype(np.float32)
        samples.append(Sample(img, label, np.zeros((16, 16), bool), str(k)))
    ds = Dataset(samples, ["dark", "bright"])
    model, report = fit(
        ds, seed=0, epochs=3, patience=1, min_epochs=1, progress=False, arch_kwargs={"width": 4}
    )
    assert report["n_val"] == 6 and report["n_train"] == 34
    assert 1 <= report["best_epoch"] <= report["epochs_run"] <= 3
    assert len(report["history"]) == report["epochs_run"]
    p = tmp_path / "m.pt"
    save_checkpoint(model, "small_cnn", report["arch_kwargs"], ds.class_names, {}, report, p, 0)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(load_model(p)(x), model(x))
