"""Loading user models safely, and saving ours in a form that loads the same way.

Only two kinds of file are accepted, because unpickling an arbitrary Python object runs arbitrary
code: TorchScript archives (``torch.jit.load``) and ``state_dict`` checkpoints read with
``torch.load(weights_only=True)`` plus an architecture (``"module:Class"``, ``"file.py:Class"`` or
a name in ``leakaudit.models.zoo.ARCHITECTURES``). A fully pickled ``nn.Module`` is refused with a
message that says how to export one of the accepted kinds.

Preprocessing is part of the model's description (``ModelSpec``), not of the data: images stay
in [0, 1] RGB everywhere, and ``Preprocessed`` applies mean/std and channel order inside
``forward`` so explainers attribute to the pixels the user sees. The spec is recorded in the report.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import pickle
import sys
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leakaudit.errors import ConfigError, ModelLoadError
from leakaudit.jsonable import jsonable
from leakaudit.models.zoo import ARCHITECTURES

CHECKPOINT_FORMAT = "leakaudit-checkpoint-1"
MODEL_CARD = "model_card.json"

_EXPORT_HINT = (
    "Export it as TorchScript (torch.jit.script(model).save(path), or torch.jit.trace) or save "
    "model.state_dict() with torch.save and pass the class as --arch module:Class or "
    "path/to/file.py:Class."
)


@dataclass
class ModelSpec:
    """Everything needed to rebuild and feed a model; recorded in the report as it is."""

    path: str | None = None
    arch: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None  # square side the model expects; readers resize to it
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: str = "RGB"  # "RGB" or "BGR": order the model wants its channels in
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ConfigError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None:
                if len(v) != 3:
                    raise ConfigError(f"{name} needs 3 values (R, G, B), got {v}")
                setattr(self, name, tuple(float(x) for x in v))
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be > 0, got {self.std}")

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """NHWC float RGB in [0, 1] → what the model eats: normalised, channels reordered.

        Resizing is not done here: readers resize images and masks together to ``input_size``.
        """
        x = np.asarray(images, dtype=np.float32)
        if self.input_size is not None and x.shape[1:3] != (self.input_size, self.input_size):
            raise ConfigError(
                f"images are {x.shape[2]}×{x.shape[1]} but the model expects "
                f"{self.input_size}×{self.input_size}; read the data with size={self.input_size}"
            )
        if self.mean is not None:
            x = x - np.asarray(self.mean, dtype=np.float32)
        if self.std is not None:
            x = x / np.asarray(self.std, dtype=np.float32)
        if self.channel_order == "BGR":
            x = x[..., ::-1]
        return np.ascontiguousarray(x, dtype=np.float32)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model with this spec's preprocessing inside ``forward`` (input: [0, 1] RGB)."""
        if self.mean is None and self.std is None and self.channel_order == "RGB":
            return model
        return Preprocessed(model, self.mean, self.std, bgr=self.channel_order == "BGR")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Preprocessed(nn.Module):
    """Wraps a model so it takes NCHW RGB in [0, 1]: optional BGR swap, then (x - mean) / std."""

    def __init__(
        self,
        model: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        bgr: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.bgr = bgr
        m = torch.tensor(mean if mean is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        s = torch.tensor(std if std is not None else (1.0, 1.0, 1.0), dtype=torch.float32)
        self.register_buffer("mean", m.view(1, 3, 1, 1))
        self.register_buffer("std", s.view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.bgr:
            x = x.flip(1)
        return self.model(x)


# --------------------------------------------------------------------------------------------
# architectures


def resolve_arch(arch: str) -> type[nn.Module]:
    """A registry name, ``"package.module:Class"`` or ``"path/to/file.py:Class"`` → the class."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    if ":" not in arch:
        raise ModelLoadError(
            f"unknown architecture {arch!r}: use one of {sorted(ARCHITECTURES)}, "
            "'module:Class' or 'file.py:Class'"
        )
    where, _, cls_name = arch.rpartition(":")
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            file = Path(where)
            if not file.is_file():
                raise ModelLoadError(f"architecture file not found: {file}")
            mod_name = f"_leakaudit_arch_{abs(hash(str(file.resolve())))}"
            spec = importlib.util.spec_from_file_location(mod_name, file)
            if spec is None or spec.loader is None:
                raise ModelLoadError(f"cannot import architecture file {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ModelLoadError:
        raise
    except Exception as e:  # an import error in user code: report it, don't crash
        raise ModelLoadError(f"cannot import {where!r} for architecture {arch!r}: {e}") from e
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ModelLoadError(f"{arch!r}: {cls_name!r} is not an nn.Module class in {where}")
    return cls


def _construct(cls: type[nn.Module], kwargs: dict[str, Any], n_classes: int | None) -> nn.Module:
    kwargs = dict(kwargs)
    if n_classes is not None and "n_classes" not in kwargs:
        try:
            params = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            params = {}
        if "n_classes" in params:
            kwargs["n_classes"] = n_classes
        elif "num_classes" in params and "num_classes" not in kwargs:
            kwargs["num_classes"] = n_classes
    try:
        return cls(**kwargs)
    except Exception as e:
        raise ModelLoadError(f"cannot build {cls.__name__}(**{kwargs}): {e}") from e


# --------------------------------------------------------------------------------------------
# loading


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_model(
    path: str | Path,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    n_classes: int | None = None,
) -> nn.Module:
    """Load a TorchScript file or a state_dict checkpoint (+ ``arch``) on CPU, in eval mode.

    Checkpoints written by ``save_checkpoint`` carry their arch and kwargs, so ``arch`` may be
    omitted for them. Everything that goes wrong raises ``ModelLoadError`` naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch ≥ 2.10 flags jit as deprecated; still fine
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise ModelLoadError(f"cannot load TorchScript model {path}: {e}") from e
        model.eval()
        return model
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(
            f"{path} contains pickled Python objects (probably a whole nn.Module saved with "
            f"torch.save(model)); leakaudit refuses to unpickle them because that can run "
            f"arbitrary code. {_EXPORT_HINT} (torch said: {str(e).splitlines()[0]})"
        ) from e
    except Exception as e:
        raise ModelLoadError(f"cannot read model file {path}: {e}") from e
    if isinstance(obj, nn.Module):  # cannot happen with weights_only, kept as a guard
        raise ModelLoadError(f"{path} is a pickled module. {_EXPORT_HINT}")
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a state_dict")

    kwargs: dict[str, Any] = {}
    state = obj
    if isinstance(obj.get("state_dict"), Mapping):
        state = obj["state_dict"]
        if arch is None and isinstance(obj.get("arch"), str):
            arch = obj["arch"]
            kwargs.update(obj.get("arch_kwargs") or {})
        if n_classes is None and isinstance(obj.get("classes"), list):
            n_classes = len(obj["classes"])
    if arch is None:
        raise ModelLoadError(
            f"{path} is a state_dict: say which class it belongs to with arch='module:Class', "
            f"'file.py:Class' or one of {sorted(ARCHITECTURES)}"
        )
    kwargs.update(arch_kwargs or {})
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: the state_dict holds values that are not tensors")
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    model = _construct(resolve_arch(arch), kwargs, n_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"{path} does not fit architecture {arch!r}: {e}") from e
    model.eval()
    return model


@torch.inference_mode()
def check_output_width(model: nn.Module, spec: ModelSpec | None, n_classes: int) -> int:
    """Run one blank image through the model; its output width must equal ``n_classes``."""
    side = spec.input_size if spec is not None and spec.input_size else 64
    x = torch.zeros(1, 3, side, side)
    if spec is not None:
        x = torch.from_numpy(spec.preprocess(np.zeros((1, side, side, 3), np.float32)))
        x = x.permute(0, 3, 1, 2).contiguous()
    where = f" ({spec.path})" if spec is not None and spec.path else ""
    model.eval()
    try:
        out = model(x)
    except Exception as e:
        raise ModelLoadError(f"model{where} fails on a 1×3×{side}×{side} input: {e}") from e
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = getattr(out, "shape", type(out).__name__)
        raise ModelLoadError(f"model{where} must return (batch, classes) logits, got {shape}")
    width = int(out.shape[1])
    if width != n_classes:
        raise ModelLoadError(
            f"model{where} outputs {width} scores but the dataset has {n_classes} classes"
        )
    return width


# --------------------------------------------------------------------------------------------
# saving


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays and tuples → plain Python, so weights_only loading accepts them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def save_checkpoint(
    model: nn.Module,
    arch_name: str,
    kwargs: Mapping[str, Any],
    classes: Sequence[str],
    preprocessing: Mapping[str, Any] | None,
    metrics: Mapping[str, Any] | None,
    path: str | Path,
    seed: int | None = None,
) -> Path:
    """Write a state_dict checkpoint (tensors + plain Python only) and ``model_card.json`` beside
    it; ``load_model(path)`` rebuilds the model without being told the arch. Returns the card."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch_name,
        "arch_kwargs": _plain(dict(kwargs)),
        "classes": [str(c) for c in classes],
        "preprocessing": _plain(dict(preprocessing or {})),
        "metrics": _plain(dict(metrics or {})),
        "seed": seed,
    }
    torch.save({**meta, "state_dict": state}, path)
    card = path.parent / MODEL_CARD
    card.write_text(
        json.dumps(jsonable({**meta, "checkpoint": path.name}), indent=2) + "\n",
        encoding="utf-8",
    )
    return card


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The metadata (classes, preprocessing, metrics…) of a ``save_checkpoint`` file, or {}."""
    if not Path(path).is_file() or _is_torchscript(Path(path)):
        return {}
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:
        return {}
    if not isinstance(obj, Mapping) or obj.get("format") != CHECKPOINT_FORMAT:
        return {}
    return {k: v for k, v in obj.items() if k != "state_dict"}
