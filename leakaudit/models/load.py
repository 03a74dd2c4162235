"""Loading user models safely, and saving ours in a form that loads the same way.

Only two kinds of file are accepted, because unpickling an arbitrary Python object runs arbitrary
code: TorchScript archives (``torch.jit.load``) and ``state_dict`` checkpoints read with
``torch.load(weights_only=True)`` plus an architecture (``"module:Class"``, ``"file.py:Class"`` or
a name in ``leakaudit.models.zoo.ARCHITECTURES``; see ``leakaudit.models.arch``). A fully pickled
``nn.Module`` is refused with a message that says how to export one of the accepted kinds.

A checkpoint is data, never a choice of code: the architecture it names is used only if it is
bundled (anything else must come from the user's ``--arch``), and every metadata value is checked
(``leakaudit.models.meta``) before it is used. A TorchScript ``forward`` declared to return a tuple
or list whose first element is a tensor is accepted as returning that tensor (``FirstOutput``;
traced Hugging Face models return ``(logits,)``); any other non-tensor return type is refused at
load time. Python models must return the logits tensor itself.

Preprocessing is part of the model's description (``ModelSpec``), not of the data: images stay
in [0, 1] RGB everywhere, and ``Preprocessed`` applies mean/std and channel order inside
``forward`` so explainers attribute to the pixels the user sees. The spec is recorded in the report.
"""

from __future__ import annotations

import json
import pickle
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
from leakaudit.models.arch import construct, is_bundled, resolve_arch
from leakaudit.models.meta import MAX_INPUT_SIDE, check_meta
from leakaudit.models.zoo import ARCHITECTURES

__all__ = [
    "MAX_INPUT_SIDE",
    "FirstOutput",
    "ModelSpec",
    "Preprocessed",
    "check_output_width",
    "load_model",
    "read_checkpoint_meta",
    "resolve_arch",
    "save_checkpoint",
]

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

    def extra_repr(self) -> str:
        return f"bgr={self.bgr}"  # part of the cache fingerprint: RGB and BGR differ

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.bgr:
            x = x.flip(1)
        return self.model(x)


# --------------------------------------------------------------------------------------------
# loading


def _one_line(e: BaseException, limit: int = 300) -> str:
    """The line of an exception that says what went wrong. TorchScript errors start with the
    interpreter's traceback and end with the error; Python and torch errors start with it."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    line = lines[-1] if "TorchScript" in lines[0] or "Traceback" in lines[0] else lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _sniff(path: Path) -> str:
    """'torchscript', 'zip' (torch.save) or 'pickle' (torch.save before 1.6), from the bytes."""
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file {path} is empty (0 bytes)")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise ModelLoadError(f"model file {path} is a damaged zip archive: {e}") from e
        ts = any(n.endswith("/constants.pkl") or "/code/" in n for n in names)
        return "torchscript" if ts else "zip"
    with path.open("rb") as f:
        head = f.read(2)
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2–5 header
        return "pickle"
    raise ModelLoadError(
        f"{path} is not a PyTorch checkpoint or TorchScript file (neither a zip archive nor a "
        f"pickle). {_EXPORT_HINT}"
    )


def _is_torchscript(path: Path) -> bool:
    try:
        return _sniff(path) == "torchscript"
    except ModelLoadError:
        return False


def _device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ModelLoadError(f"unknown device {device!r}: {_one_line(e)}") from e
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index or 0) >= n:
            raise ModelLoadError(f"device {device!r} is not available here ({n} CUDA devices)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {device!r} is not available here")
    return dev


class FirstOutput(nn.Module):
    """A TorchScript model whose forward returns ``(logits, ...)`` (Hugging Face exports return
    ``(logits,)``), seen as one returning the logits: the rest of leakaudit takes a tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


def _logits_only(model: nn.Module, path: Path) -> nn.Module:
    """Accept a TorchScript forward declared to return a tensor, or a tuple/list whose first
    element is a tensor (wrapped in ``FirstOutput``); refuse anything else when loading."""
    try:
        returns = model.forward.schema.returns
    except Exception:  # no readable schema: check_output_width still checks the output
        return model
    if len(returns) != 1 or isinstance(returns[0].type, torch.TensorType):
        return model
    kind = returns[0].type
    first = None
    if isinstance(kind, torch.TupleType) and kind.elements():
        first = kind.elements()[0]
    elif isinstance(kind, torch.ListType):
        first = kind.getElementType()
    if isinstance(first, torch.TensorType):
        return FirstOutput(model)
    raise ModelLoadError(
        f"TorchScript model {path} returns {kind}; expected a (batch, classes) logits tensor "
        "or a tuple whose first element is one"
    )


def _fit_problems(want: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
    """How a state_dict differs from a model's, in one line (a few keys of each kind)."""

    def few(items: list[str]) -> str:
        more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
        return ", ".join(items[:3]) + more

    def dims(t: torch.Tensor) -> str:
        return "×".join(map(str, t.shape)) or "scalar"

    shapes = [f"{k} ({dims(state[k])} in the file, {dims(v)} in the model)"
              for k, v in want.items() if k in state and state[k].shape != v.shape]  # fmt: skip
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    parts = [f"shapes differ for {few(shapes)}"] if shapes else []
    parts += [f"missing from the file: {few(missing)}"] if missing else []
    parts += [f"not in the model: {few(extra)}"] if extra else []
    return "; ".join(parts)


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
    dev = _device(device)
    if _sniff(path) == "torchscript":
        try:
            with warnings.catch_warnings():  # torch ≥ 2.10 flags jit as deprecated; still fine
                warnings.simplefilter("ignore", DeprecationWarning)
                model = torch.jit.load(str(path), map_location=dev)
        except Exception as e:
            raise ModelLoadError(f"cannot load TorchScript model {path}: {_one_line(e)}") from e
        model.eval()
        return _logits_only(model, path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelLoadError(
            f"{path} contains pickled Python objects (probably a whole nn.Module saved with "
            f"torch.save(model)); leakaudit refuses to unpickle them because that can run "
            f"arbitrary code. {_EXPORT_HINT} (torch said: {_one_line(e)})"
        ) from e
    except Exception as e:
        raise ModelLoadError(f"cannot read model file {path}: {_one_line(e)}") from e
    if isinstance(obj, nn.Module):  # cannot happen with weights_only, kept as a guard
        raise ModelLoadError(f"{path} is a pickled module. {_EXPORT_HINT}")
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
            f"{path} is a state_dict: say which class it belongs to with arch='module:Class', "
            f"'file.py:Class' or one of {sorted(ARCHITECTURES)}"
        )
    if arch_kwargs is not None and not isinstance(arch_kwargs, Mapping):
        raise ModelLoadError(f"arch_kwargs must be a dict, got {type(arch_kwargs).__name__}")
    kwargs.update(arch_kwargs or {})
    odd = [repr(k) for k, v in state.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if odd:
        raise ModelLoadError(
            f"{path}: the state_dict holds entries that are not named tensors: "
            f"{', '.join(odd[:3])}{' …' if len(odd) > 3 else ''} (save model.state_dict() alone)"
        )
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    factory = resolve_arch(arch)
    try:  # shapes first, without memory: hostile arch_kwargs cannot make a huge model
        shell = construct(factory, kwargs, n_classes, device="meta")
    except ModelLoadError:
        shell = None  # not buildable on the meta device; the real build reports any error
    if shell is not None and (problems := _fit_problems(shell.state_dict(), state)):
        raise ModelLoadError(f"{path} does not fit architecture {arch!r}: {problems}")
    model = construct(factory, kwargs, n_classes)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        problems = _fit_problems(model.state_dict(), state) or _one_line(e)
        raise ModelLoadError(f"{path} does not fit architecture {arch!r}: {problems}") from e
    return model.to(dev).eval()


def _model_device(model: nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.inference_mode()
def check_output_width(model: nn.Module, spec: ModelSpec | None, n_classes: int) -> int:
    """Run one blank image through the model (on the model's device); its output must be
    floating-point (batch, classes) logits with ``n_classes`` columns."""
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
            f"model{where} fails on a 1×3×{side}×{side} input: {_one_line(e)}"
        ) from e
    if isinstance(out, (tuple, list)):
        raise ModelLoadError(
            f"model{where} returns a {type(out).__name__}; its forward must return the "
            "(batch, classes) logits tensor (TorchScript files declaring a tuple are unwrapped "
            "to its first element, Python models are not)"
        )
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
    torch.save({**meta, "state_dict": state}, path)
    card = path.parent / MODEL_CARD
    card.write_text(
        json.dumps(jsonable({**meta, "checkpoint": path.name}), indent=2) + "\n",
        encoding="utf-8",
    )
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
        if _sniff(path) == "torchscript":
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
