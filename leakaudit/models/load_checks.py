"""What a model file is, and how it fails to be what the loader needs, each in one line.

Split from ``leakaudit.models.load`` so the loader reads as the steps it takes. Every function
raises or returns a message that names the file and the problem; none prints a traceback.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from leakaudit.errors import ModelLoadError

EXPORT_HINT = (
    "Export it as TorchScript (torch.jit.script(model).save(path), or torch.jit.trace) or save "
    "model.state_dict() with torch.save and pass the class as --arch module:Class or "
    "path/to/file.py:Class."
)


def one_line(e: BaseException, limit: int = 300) -> str:
    """The line of an exception that says what went wrong. TorchScript errors start with the
    interpreter's traceback and end with the error; Python and torch errors start with it."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(e))  # torch bolds some warnings (ANSI)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    line = lines[-1] if "TorchScript" in lines[0] or "Traceback" in lines[0] else lines[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def sniff(path: Path) -> str:
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
        f"pickle). {EXPORT_HINT}"
    )


def as_device(device: str | torch.device) -> torch.device:
    """``device`` checked before anything is loaded: a typo or a missing GPU is one line here,
    not a CUDA error from deep inside the first forward pass."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ModelLoadError(f"unknown device {device!r}: {one_line(e)}") from e
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index or 0) >= n:
            raise ModelLoadError(f"device {device!r} is not available here ({n} CUDA devices)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {device!r} is not available here")
    return dev


def check_declared_output(model: nn.Module, path: Path) -> None:
    """Refuse, at load time, a TorchScript forward declared to return anything but a tensor or
    a tuple/list whose first element is a tensor (the audit passes element 0 on as the logits;
    traced Hugging Face models return ``(logits,)``)."""
    try:
        returns = model.forward.schema.returns
    except Exception:  # no readable schema: check_output_width still checks the output
        return
    if len(returns) != 1 or isinstance(returns[0].type, torch.TensorType):
        return
    kind = returns[0].type
    first = None
    if isinstance(kind, torch.TupleType) and kind.elements():
        first = kind.elements()[0]
    elif isinstance(kind, torch.ListType):
        first = kind.getElementType()
    if isinstance(first, torch.TensorType):
        return
    raise ModelLoadError(
        f"TorchScript model {path} returns {kind}; expected a (batch, classes) logits tensor "
        "or a tuple whose first element is one"
    )


def fit_problems(want: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str:
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
