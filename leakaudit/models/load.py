"""Loading user models safely, and saving ours in a form that loads the same way.

Only two kinds of file are accepted, because unpickling an arbitrary Python object runs arbitrary
code: TorchScript archives (``torch.jit.load``) and ``state_dict`` checkpoints read with
``torch.load(weights_only=True)`` plus an architecture (``"module:Class"``, ``"file.py:Class"`` or
a name in ``leakaudit.models.zoo.ARCHITECTURES``; see ``leakaudit.models.arch``). A fully pickled
``nn.Module`` is refused with a message that says how to export one of the accepted kinds.

A checkpoint is data, never a choice of code: the architecture it names is used only if it is
bundled (anything else must come from the user's ``--arch``), and every metadata value is checked
(``leakaudit.models.meta``) before it is used. A TorchScript ``forward`` declared to return a tuple
or list whose first element is a tensor is accepted (traced Hugging Face models return
``(logits,)``; the audit passes element 0 on as the logits); any other declared return type is
refused at load time, and ``check_output_width`` checks what a model actually returns.

Preprocessing is part of the model's description (``ModelSpec``), not of the data: images stay
in [0, 1] RGB everywhere, and ``Preprocessed`` applies mean/std and channel order inside
``forward`` so explainers attribute to the pixels the user sees. The spec is recorded in the report.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leakaudit.errors import ConfigError, ModelLoadError
from leakaudit.jsonable import jsonable
from leakaudit.models.arch import construct, is_bundled, meta_build, resolve_arch
from leakaudit.models.load_checks import (
    EXPORT_HINT,
    as_device,
    check_declared_output,
    fit_problems,
    one_line,
    sniff,
)
from leakaudit.models.meta import MAX_INPUT_SIDE, check_meta
from leakaudit.models.zoo import ARCHITECTURES
from leakaudit.paths import OutputSet

__all__ = [
    "MAX_INPUT_SIDE",
    "ModelSpec",
    "Preprocessed",
    "check_output_width",
    "load_model",
    "read_checkpoint_meta",
    "resolve_arch",
    "save_checkpoint",
]

# torch ≥ 2.10 warns "`torch.jit.load` is deprecated" (also .save, .script) on every call;
# TorchScript is still what users export, so only that one message is silenced, only around
# our own calls to torch.jit.
JIT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch's TorchScript deprecation warning (and nothing else) inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=DeprecationWarning)
        yield


CHECKPOINT_FORMAT = "leakaudit-checkpoint-1"
MODEL_CARD = "model_card.json"


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

    def extra_repr(self) -> str:
        return f"bgr={self.bgr}"  # part of the cache fingerprint: RGB and BGR differ

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.bgr:
            x = x.flip(1)
        return self.model(x)


# --------------------------------------------------------------------------------------------
# loading


def load_model(
    path: str | Path,
    arch: str | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    n_classes: int | None = None,
    *,
    device: str | torch.device = "cpu",
    max_input_side: int = MAX_INPUT_SIDE,
) -> nn.Module:
    """Load a TorchScript file or a state_dict checkpoint (+ ``arch``) onto ``device``, in eval
    mode. Everything that goes wrong raises a one-line ``ModelLoadError`` naming ``path``.

    ``arch`` is the user's choice and may import code (see ``resolve_arch``). Checkpoints written
    by ``save_checkpoint`` name their arch, so ``arch`` may be omitted for them, but a name read
    from the file is used only if it is bundled: the file is data, and importing a module it
    names would run code the user never chose.
    """
    path = Path(path)
    dev = as_device(device)
    if sniff(path) == "torchscript":
        try:
            with quiet_jit():
                model = torch.jit.load(str(path), map_location=dev)
        except Exception as e:
            raise ModelLoadError(f"cannot load TorchScript model {path}: {one_line(e)}") from e
        check_declared_output(model, path)
        return model.eval()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" (it holds a {found.group(1)})" if found else ""
        raise ModelLoadError(
            f"{path} contains pickled Python objects{what}, probably a whole nn.Module saved "
            "with torch.save(model); leakaudit refuses to unpickle them because that can run "
            f"arbitrary code. {EXPORT_HINT}"
        ) from e
    except Exception as e:
        raise ModelLoadError(f"cannot read model file {path}: {one_line(e)}") from e
    if isinstance(obj, nn.Module):  # cannot happen with weights_only, kept as a guard
        raise ModelLoadError(f"{path} is a pickled module. {EXPORT_HINT}")
    if not isinstance(obj, Mapping):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a state_dict")

    kwargs: dict[str, Any] = {}
    state = obj
    if isinstance(obj.get("state_dict"), Mapping):
        state = obj["state_dict"]
        meta = check_meta(obj, path, max_input_side)
        if arch is None and meta.get("arch") is not None:
            if not is_bundled(meta["arch"]):
                raise ModelLoadError(
                    f"{path} names architecture {meta['arch']!r}, which is not bundled; "
                    "leakaudit never imports code named by a checkpoint — pass --arch "
                    f"{meta['arch']} yourself if you trust that file"
                )
            arch = meta["arch"]
            kwargs.update(meta.get("arch_kwargs") or {})
        if n_classes is None and meta.get("classes"):
            n_classes = len(meta["classes"])
    if arch is None:
        raise ModelLoadError(
            f"{path} is a state_dict: say which class it belongs to with --arch (in Python: "
            f"arch=) module:Class, file.py:Class or one of {sorted(ARCHITECTURES)}"
        )
    if arch_kwargs is not None and not isinstance(arch_kwargs, Mapping):
        raise ModelLoadError(f"arch_kwargs must be a dict, got {type(arch_kwargs).__name__}")
    kwargs.update(arch_kwargs or {})
    odd = [repr(k) for k, v in state.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if odd:
        nested = [repr(k) for k, v in state.items() if isinstance(v, Mapping)]
        hint = f"; are the weights under {nested[0]}?" if nested else ""
        raise ModelLoadError(
            f"{path}: the state_dict holds entries that are not named tensors: "
            f"{', '.join(odd[:3])}{' …' if len(odd) > 3 else ''} (save model.state_dict() "
            f"alone{hint})"
        )
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    factory = resolve_arch(arch)
    try:  # shapes first, without memory: hostile arch_kwargs cannot make a huge model
        shell = meta_build(factory, kwargs, n_classes)  # None: user code not meta-buildable
    except ModelLoadError as e:
        raise ModelLoadError(f"{path}: {e}") from e
    if shell is not None and (problems := fit_problems(shell.state_dict(), state)):
        raise ModelLoadError(f"{path} does not fit architecture {arch!r}: {problems}")
    model = construct(factory, kwargs, n_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        problems = fit_problems(model.state_dict(), state) or one_line(e)
        raise ModelLoadError(f"{path} does not fit architecture {arch!r}: {problems}") from e
    return model.to(dev).eval()


def _model_device(model: nn.Module) -> torch.device:
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


@torch.inference_mode()
def check_output_width(model: nn.Module, spec: ModelSpec | None, n_classes: int) -> int:
    """Run one blank image through the model (on the model's device); its output (or element 0
    of a returned tuple/list) must be floating-point (batch, classes) logits, ``n_classes`` wide."""
    side = spec.input_size if spec is not None and spec.input_size else 64
    x = torch.zeros(1, 3, side, side)
    if spec is not None:
        x = torch.from_numpy(spec.preprocess(np.zeros((1, side, side, 3), np.float32)))
        x = x.permute(0, 3, 1, 2).contiguous()
    where = f" ({spec.path})" if spec is not None and spec.path else ""
    model.eval()
    try:
        out = model(x.to(_model_device(model)))
    except Exception as e:
        raise ModelLoadError(
            f"model{where} fails on a 1×3×{side}×{side} input: {one_line(e)}"
        ) from e
    if isinstance(out, (tuple, list)):  # (logits, ...): the audit uses element 0, so do we
        if not out or not isinstance(out[0], torch.Tensor):
            first = type(out[0]).__name__ if out else "nothing"
            raise ModelLoadError(
                f"model{where} returns a {type(out).__name__} starting with {first}; expected "
                "(batch, classes) logits or a tuple whose first element is them"
            )
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ModelLoadError(
            f"model{where} returns a {type(out).__name__}, expected (batch, classes) logits"
        )
    if not out.dtype.is_floating_point:
        dtype = str(out.dtype).removeprefix("torch.")
        raise ModelLoadError(f"model{where} returns {dtype} scores, expected floating-point logits")
    if out.ndim != 2:
        raise ModelLoadError(
            f"model{where} must return (batch, classes) logits, got shape {tuple(out.shape)}"
        )
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
    card = path.parent / MODEL_CARD
    with OutputSet() as outs:  # checkpoint and card together, or neither; never through a link
        torch.save({**meta, "state_dict": state}, outs.path(path))
        outs.write(card, json.dumps(jsonable({**meta, "checkpoint": path.name}), indent=2) + "\n")
    return card


def read_checkpoint_meta(path: str | Path, max_input_side: int = MAX_INPUT_SIDE) -> dict[str, Any]:
    """The metadata (classes, preprocessing, metrics…) of a ``save_checkpoint`` file, or {} for
    any other file (``load_model`` explains what is wrong with it).

    The values are untrusted data: each one is checked (``check_meta``: one-line
    ``ModelLoadError``), and an ``arch`` that is not bundled is left out, because callers pass
    ``meta["arch"]`` on to ``load_model`` as if the user had named it.
    """
    path = Path(path)
    try:
        if sniff(path) == "torchscript":
            return {}
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return {}
    if not isinstance(obj, Mapping) or obj.get("format") != CHECKPOINT_FORMAT:
        return {}
    meta = check_meta(obj, path, max_input_side)
    if not is_bundled(meta.get("arch")):
        meta.pop("arch", None)
    return meta
