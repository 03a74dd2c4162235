"""Model loading under hostile or broken input: a checkpoint never chooses code to import, bad
metadata and odd models give one-line ModelLoadErrors, ``--arch`` resolves like the user means it.
"""

from __future__ import annotations

import sys
import textwrap
import types
import uuid

import numpy as np
import pytest
import torch
from torch import nn

from leakaudit.data.images import save_png
from leakaudit.errors import ModelLoadError
from leakaudit.models.load import (
    CHECKPOINT_FORMAT,
    MAX_INPUT_SIDE,
    ModelSpec,
    check_output_width,
    load_model,
    read_checkpoint_meta,
)
from leakaudit.models.zoo import SmallCNN

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

X = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


class Tiny(nn.Module):
    def __init__(self, n_classes: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, hidden, 3, padding=1)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean(dim=(2, 3)))


# The same class as source, for architecture files and modules the tests write.
TINY_SRC = textwrap.dedent(
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


def _tiny(n_classes: int = 3, hidden: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return Tiny(n_classes, hidden).eval()


def _checkpoint(path, state=None, **meta):
    """A save_checkpoint-style file with arbitrary (possibly hostile) metadata."""
    state = _tiny().state_dict() if state is None else state
    torch.save({"format": CHECKPOINT_FORMAT, **meta, "state_dict": state}, path)
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture
def evil_file(tmp_path):
    """An architecture file that leaves a marker when imported, i.e. when its code runs."""
    marker = tmp_path / "IMPORTED"
    f = tmp_path / "evil.py"
    f.write_text(f"open({str(marker)!r}, 'w').close()\n" + TINY_SRC)
    return f, marker


# --------------------------------------------------------------------------------------------
# 1. a checkpoint's metadata never makes leakaudit import code


def test_checkpoint_naming_a_file_is_not_imported(tmp_path, evil_file):
    f, marker = evil_file
    p = _checkpoint(tmp_path / "model.pt", arch=f"{f}:Tiny", classes=["a", "b", "c"])
    with pytest.raises(ModelLoadError, match="not bundled") as err:
        load_model(p)
    text = _one_line(err)
    assert "model.pt" in text and f"--arch {f}:Tiny" in text and "never imports" in text
    meta = read_checkpoint_meta(p)
    assert "arch" not in meta and meta["classes"] == ["a", "b", "c"]
    assert not marker.exists()
    # the user may still trust that file explicitly, and then it is imported and used
    model = load_model(p, arch=f"{f}:Tiny")
    assert marker.exists()
    torch.testing.assert_close(model(X), _tiny()(X))


def test_checkpoint_naming_a_module_is_not_imported(tmp_path, monkeypatch):
    name = f"evil_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + TINY_SRC)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    p = _checkpoint(tmp_path / "model.pt", arch=f"{name}:Tiny")
    with pytest.raises(ModelLoadError, match="not bundled"):
        load_model(p)
    with pytest.raises(ModelLoadError, match="not bundled"):
        load_model(p, arch=read_checkpoint_meta(p).get("arch"))  # what the pipeline does
    assert not marker.exists() and name not in sys.modules


def test_cli_audit_refuses_checkpoint_arch_and_exits_2(tmp_path, evil_file, capsys):
    from leakaudit.cli import run

    f, marker = evil_file
    rng = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        for k in range(2):
            save_png(rng.random((16, 16, 3)).astype(np.float32), tmp_path / "d" / cls / f"{k}.png")
    p = _checkpoint(tmp_path / "model.pt", arch=f"{f}:Tiny", classes=["a", "b", "c"],
                    preprocessing={"input_size": 16})  # fmt: skip
    args = ["audit", "--data", str(tmp_path / "d"), "--model", str(p), "--quiet",
            "--methods", "saliency", "--out", str(tmp_path / "out")]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        run(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "not bundled" in err and err.count("\n") == 1
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# 5. bad metadata values and odd model outputs


@pytest.mark.parametrize(
    ("meta", "field"),
    [
        ({"preprocessing": {"input_size": "64"}}, "input_size"),
        ({"preprocessing": {"input_size": -3}}, "input_size"),
        ({"preprocessing": {"input_size": 30000}}, "input_size"),
        ({"preprocessing": {"input_size": True}}, "input_size"),
        ({"preprocessing": {"mean": "abc"}}, "mean"),
        ({"preprocessing": {"std": [0.2, 0.0, 0.2]}}, "std"),
        ({"preprocessing": {"crop": {"margin": "wide"}}}, "crop"),
        ({"preprocessing": "resize"}, "preprocessing"),
        ({"classes": "abc"}, "classes"),
        ({"classes": [1, 2, 3]}, "classes"),
        ({"classes": ["a", "a", "b"]}, "classes"),
        ({"arch": "small_cnn", "arch_kwargs": [4]}, "arch_kwargs"),
        ({"arch": "small_cnn", "arch_kwargs": "width=4"}, "arch_kwargs"),
        ({"arch": 7}, "arch"),
    ],
)
def test_bad_metadata_is_one_line_error(tmp_path, meta, field):
    p = _checkpoint(tmp_path / "model.pt", **meta)
    for load in (read_checkpoint_meta, lambda path: load_model(path, arch="small_cnn")):
        with pytest.raises(ModelLoadError, match=f"'{field}'") as err:
            load(p)
        assert "model.pt" in _one_line(err)


def test_input_size_cap_is_a_default_not_a_law(tmp_path):
    p = _checkpoint(tmp_path / "model.pt", preprocessing={"input_size": MAX_INPUT_SIDE + 1})
    with pytest.raises(ModelLoadError, match=str(MAX_INPUT_SIDE)):
        read_checkpoint_meta(p)
    meta = read_checkpoint_meta(p, max_input_side=MAX_INPUT_SIDE + 1)
    assert meta["preprocessing"]["input_size"] == MAX_INPUT_SIDE + 1


def test_hostile_arch_kwargs_are_caught_before_allocating(tmp_path, monkeypatch):
    # small_cnn with width 10**6 would need terabytes; the shapes are compared on the meta
    # device first, so this is a "does not fit" message, not an allocation failure (the
    # parameter cap, raised here, would refuse it first: tests/test_hardening_v3_config.py).
    monkeypatch.setenv("LEAKAUDIT_MAX_PARAMS", str(10**15))
    state = SmallCNN(3, width=4).state_dict()
    p = _checkpoint(tmp_path / "model.pt", state, arch="small_cnn", arch_kwargs={"width": 10**6},
                    classes=["a", "b", "c"])  # fmt: skip
    with pytest.raises(ModelLoadError, match="does not fit architecture 'small_cnn'") as err:
        load_model(p)
    assert "features.0.weight (4×3×3×3 in the file, 1000000×3×3×3 in the model)" in _one_line(err)


class TwoOutputs(Tiny):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.head(self.conv(x).mean(dim=(2, 3)))
        return y, y * 2


class Shapes(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[int, int]:
        return x.shape[0], x.shape[1]


class Votes(Tiny):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.head(self.conv(x).mean(dim=(2, 3)))
        return (y == y.max(dim=1, keepdim=True).values).long()


class WrongWidth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean(dim=(2, 3)))


def _script(model: nn.Module, path):
    torch.manual_seed(0)
    torch.jit.script(model).save(str(path))
    return path


def test_tuple_output_is_accepted_when_element_0_is_logits(tmp_path):
    p = _script(TwoOutputs(), tmp_path / "two.pt")
    model = load_model(p)
    torch.testing.assert_close(model(X)[0], torch.jit.load(str(p))(X)[0])
    assert check_output_width(model, ModelSpec(path=str(p), input_size=16), 3) == 3
    assert check_output_width(TwoOutputs(), ModelSpec(path="m.pt"), 3) == 3  # Python model
    with pytest.raises(ModelLoadError, match="outputs 3 scores but the dataset has 4"):
        check_output_width(TwoOutputs(), ModelSpec(path="m.pt"), 4)  # element 0 is checked


class ShapesFirst(nn.Module):
    def forward(self, x):
        return x.shape[1], x.mean(dim=(2, 3))


def test_odd_outputs_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match=r"returns Tuple\[int, int\]") as err:
        load_model(_script(Shapes(), tmp_path / "shapes.pt"))  # refused from its declared type
    assert "shapes.pt" in _one_line(err)
    with pytest.raises(ModelLoadError, match="returns a tuple starting with int") as err:
        check_output_width(ShapesFirst(), ModelSpec(path="m.pt"), 3)
    _one_line(err)
    votes = load_model(_script(Votes(), tmp_path / "votes.pt"))
    with pytest.raises(ModelLoadError, match="returns int64 scores, expected floating-point"):
        check_output_width(votes, ModelSpec(path="votes.pt"), 3)


def test_torchscript_forward_failure_is_one_line(tmp_path):
    model = load_model(_script(WrongWidth(), tmp_path / "wide.pt"))
    with pytest.raises(ModelLoadError, match="mat1 and mat2 shapes cannot be multiplied") as err:
        check_output_width(model, ModelSpec(path="wide.pt", input_size=16), 3)
    assert "fails on a 1×3×16×16 input" in _one_line(err)


# --------------------------------------------------------------------------------------------
# 14. messages about the file itself


def test_empty_and_text_files(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"empty\.pt is empty \(0 bytes\)"):
        load_model(empty, arch="small_cnn")
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(ModelLoadError, match="is not a PyTorch checkpoint or TorchScript") as err:
        load_model(text, arch="small_cnn")
    assert "pickled" not in _one_line(err) and "notes.pt" in str(err.value)
    assert read_checkpoint_meta(empty) == {} and read_checkpoint_meta(text) == {}


def test_pickled_module_and_training_checkpoint_messages(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save(SmallCNN(3, width=4), whole)
    with pytest.raises(ModelLoadError, match=r"holds a leakaudit\.models\.zoo\.SmallCNN") as err:
        load_model(whole, arch="small_cnn")
    assert "\x1b" not in _one_line(err) and "arbitrary code" in str(err.value)
    trained = tmp_path / "trained.pt"
    torch.save({"model": _tiny().state_dict(), "epoch": 3}, trained)
    with pytest.raises(ModelLoadError, match="are the weights under 'model'") as err:
        load_model(trained, arch=f"{__name__}:Tiny")
    assert "'epoch'" in _one_line(err)


def test_shape_mismatch_is_one_line_with_the_keys(tmp_path):
    p = tmp_path / "sd.pt"
    torch.save(_tiny(n_classes=5).state_dict(), p)
    with pytest.raises(ModelLoadError, match=r"sd\.pt does not fit") as err:
        load_model(p, arch=f"{__name__}:Tiny", n_classes=3)
    text = _one_line(err)
    assert "head.weight (5×4 in the file, 3×4 in the model)" in text and "head.bias" in text
    assert "conv.weight" not in text  # only the keys that differ
    state = dict(_tiny().state_dict(), extra=torch.zeros(1))
    del state["conv.bias"]
    torch.save(state, p)
    with pytest.raises(ModelLoadError) as err:
        load_model(p, arch=f"{__name__}:Tiny")
    text = _one_line(err)
    assert "missing from the file: conv.bias" in text and "not in the model: extra" in text


# --------------------------------------------------------------------------------------------
# issues 11 and 16: --arch resolution


def test_arch_module_and_file_resolve_from_cwd(tmp_path, monkeypatch):
    name = f"mynet_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(TINY_SRC)
    p = tmp_path / "sd.pt"
    torch.save(_tiny(n_classes=4).state_dict(), p)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    try:
        model = load_model(p, arch=f"{name}:Tiny", n_classes=4)
    finally:
        sys.modules.pop(name, None)
    assert sys.path == before  # cwd was on the path for that import only
    torch.testing.assert_close(model(X), _tiny(n_classes=4)(X))
    model = load_model(p, arch=f"{name}.py:Tiny", n_classes=4)  # a relative file path
    torch.testing.assert_close(model(X), _tiny(n_classes=4)(X))
    with pytest.raises(ModelLoadError, match="current directory"):
        load_model(p, arch="no_such_module_xyz:Tiny")


FACTORY_SRC = TINY_SRC + textwrap.dedent(
    """
    def make_tiny(num_classes, hidden=4):
        torch.manual_seed(0)
        return Tiny(num_classes, hidden)

    def not_a_model(num_classes):
        return "resnet"
    """
)


def test_arch_may_be_a_factory_function(tmp_path):
    f = tmp_path / "factories.py"
    f.write_text(FACTORY_SRC)
    p = tmp_path / "sd.pt"
    torch.save(_tiny(n_classes=5, hidden=6).state_dict(), p)
    model = load_model(p, arch=f"{f}:make_tiny", arch_kwargs={"hidden": 6}, n_classes=5)
    torch.testing.assert_close(model(X), _tiny(n_classes=5, hidden=6)(X))
    with pytest.raises(ModelLoadError, match="returned a str, not a model"):
        load_model(p, arch=f"{f}:not_a_model", n_classes=5)


def _fake_package(monkeypatch, name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


def test_timm_and_torchvision_factories_never_ask_for_weights(tmp_path, monkeypatch):
    calls: list[dict] = []

    def create_model(name, pretrained=True, **kwargs):  # timm's default would download
        calls.append({"name": name, "pretrained": pretrained, **kwargs})
        return _tiny(n_classes=kwargs["num_classes"])

    def resnet18(*, weights=None, progress=True, **kwargs):  # torchvision's signature
        calls.append({"weights": weights, **kwargs})
        return _tiny(n_classes=kwargs["num_classes"])

    resnet18.__module__ = "torchvision.models.resnet"
    _fake_package(monkeypatch, "timm", create_model=create_model)
    tv = _fake_package(monkeypatch, "torchvision")
    tv.models = _fake_package(monkeypatch, "torchvision.models", resnet18=resnet18)
    p = tmp_path / "sd.pt"
    torch.save(_tiny(n_classes=5).state_dict(), p)
    model = load_model(p, arch="timm:resnet18", n_classes=5)
    torch.testing.assert_close(model(X), _tiny(n_classes=5)(X))
    load_model(p, arch="torchvision.models:resnet18", n_classes=5)
    # construction runs twice per load: once on the meta device (shapes only), once for real
    assert calls[-1] == {"weights": None, "num_classes": 5}
    assert {"name": "resnet18", "pretrained": False, "num_classes": 5} in calls
    for arch, kw in (("timm:resnet18", {"pretrained": True}),
                     ("torchvision.models:resnet18", {"weights": "IMAGENET1K_V1"})):  # fmt: skip
        with pytest.raises(ModelLoadError, match="never downloads"):
            load_model(p, arch=arch, arch_kwargs=kw, n_classes=5)


@pytest.mark.parametrize("arch", ["timm:resnet18", "torchvision.models:resnet18"])
def test_missing_optional_package_says_how_to_install(tmp_path, monkeypatch, arch):
    package = arch.split(":")[0].split(".")[0]
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    p = tmp_path / "sd.pt"
    torch.save(_tiny().state_dict(), p)
    with pytest.raises(ModelLoadError, match=f"pip install {package}") as err:
        load_model(p, arch=arch)
    _one_line(err)


# --------------------------------------------------------------------------------------------
# device


def test_device_argument(tmp_path):
    p = tmp_path / "sd.pt"
    torch.save(_tiny().state_dict(), p)
    ts = _script(Tiny(), tmp_path / "ts.pt")
    for path in (p, ts):
        model = load_model(path, arch=f"{__name__}:Tiny", device="cpu")
        assert all(t.device.type == "cpu" for t in model.state_dict().values())
    with pytest.raises(ModelLoadError, match="unknown device"):
        load_model(p, arch="small_cnn", device="warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="not available"):
            load_model(p, arch=f"{__name__}:Tiny", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_cuda(tmp_path):
    p = tmp_path / "sd.pt"
    torch.save(_tiny().state_dict(), p)
    ts = _script(Tiny(), tmp_path / "ts.pt")
    for path in (p, ts):
        model = load_model(path, arch=f"{__name__}:Tiny", device="cuda")
        assert all(t.device.type == "cuda" for t in model.state_dict().values())
        assert check_output_width(model, ModelSpec(input_size=16), 3) == 3
        torch.testing.assert_close(model(X.cuda()).cpu(), _tiny()(X))
