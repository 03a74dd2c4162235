"""Model fingerprint for the attribution cache: a SHA-256 of everything ``forward`` depends on.

Weights alone are not enough: two models with the same weights compute different maps when
their code differs, when their preprocessing differs (RGB vs BGR, mean/std), or when a plain
attribute that ``forward`` reads differs (``self.shift = 1`` vs ``2``, a bool or str that picks
a branch). So the fingerprint covers, for a TorchScript module, its whole serialized archive
(code, constants, every attribute, every tensor) and, for an eager module, its parameters,
buffers, plain attributes, settings and class source, recursively. It is deterministic across
processes: no ``id()`` and no memory address (``0x…`` in a repr) is ever hashed.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import io
import re
import sys
import types
import uuid
import zipfile
from typing import Any

import numpy as np
import torch
from torch import nn

# nn.Module bookkeeping (hook tables, the child/parameter/buffer dicts hashed on their own)
_INTERNALS = frozenset(nn.Module().__dict__) - {"training"}
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_MAX_DEPTH = 6
_CONSTANT = re.compile(rb"^\s+\w+ : Final\[.*\] = ")


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of everything the model's outputs depend on, so no cache entry outlives a change.

    Covered: TorchScript modules as their whole ``torch.jit.save`` archive (minus the debug
    source ranges and the save's id, which do not change what it computes); eager modules as
    parameters, buffers (also non-persistent ones), plain attributes, ``extra_repr()`` and the
    source file of each non-torch class in their MRO, then their children in order. The torch
    version is included: an upgrade may change the numbers.
    """
    h = hashlib.sha256(f"fingerprint-v3|torch {torch.__version__}|".encode())
    _module(h, "", model)
    return h.hexdigest()


def _module(h: Any, path: str, module: nn.Module, seen: frozenset[int] = frozenset()) -> None:
    seen = seen | {id(module)}  # a module that keeps a reference to its parent is no cycle
    if isinstance(module, torch.jit.ScriptModule):
        h.update(f"script|{path}|{_script_digest(module)}|".encode())
        return
    kind = type(module)
    h.update(f"module|{path}|{kind.__module__}.{kind.__qualname__}|".encode())
    for group in ("_parameters", "_buffers"):
        for name, t in getattr(module, group).items():
            h.update(f"{group}|{name}|{_value(t, 0, seen)}|".encode())
    for name in sorted(k for k in vars(module) if k not in _INTERNALS):
        h.update(f"attr|{name}|{_value(vars(module)[name], 0, seen)}|".encode())
    try:
        h.update(f"repr|{_ADDRESS.sub('0x?', module.extra_repr())}|".encode())
    except Exception as e:  # a broken extra_repr is a setting we cannot read: say so
        h.update(f"repr-error|{type(e).__name__}|".encode())
    if type(module).get_extra_state is not nn.Module.get_extra_state:
        h.update(f"extra|{_value(module.get_extra_state())}|".encode())
    for cls in kind.__mro__:
        if cls not in (nn.Module, object) and not cls.__module__.startswith("torch"):
            h.update(f"class|{cls.__qualname__}|{_source(cls)}|".encode())
    for name, child in module._modules.items():
        if child is None:
            h.update(f"child|{path}.{name}|None|".encode())
        else:
            _module(h, f"{path}.{name}", child, seen)


def _script_digest(module: torch.jit.ScriptModule) -> str:
    """The saved archive's entries, sorted, without the folder name (the file's stem), debug
    pickles (source ranges) and ``.data/`` (the save's id): two loads of one file agree."""
    buf = io.BytesIO()
    try:
        from leakaudit.models.load import quiet_jit  # torch ≥ 2.10 flags jit as deprecated

        with quiet_jit():
            torch.jit.save(module, buf)
    except Exception as e:  # cannot be described, so never reused: a fresh value each time
        print(f"Warning: cache: this model cannot be fingerprinted ({type(e).__name__}); "
              "its maps are never reused.", file=sys.stderr)  # fmt: skip
        return f"unknown-{uuid.uuid4().hex}"
    h = hashlib.sha256()
    with zipfile.ZipFile(buf) as z:
        entries = {n.split("/", 1)[-1]: n for n in z.namelist()}
        for name in sorted(entries):
            if name.endswith(".debug_pkl") or name.startswith(".data/"):
                continue
            data = z.read(entries[name])
            if name.startswith("code/") and name.endswith(".py"):
                data = _sort_constants(data)
            h.update(f"{name}|{len(data)}|".encode())
            h.update(data)
    return h.hexdigest()


def _sort_constants(code: bytes) -> bytes:
    """Sort each run of ``name : Final[...] = value`` lines: a freshly scripted module lists
    its constants in set order (varies with PYTHONHASHSEED), and their order means nothing."""
    lines, out, run = code.split(b"\n"), [], []
    for line in [*lines, None]:
        if line is not None and _CONSTANT.match(line):
            run.append(line)
            continue
        out += sorted(run)
        run = []
        if line is not None:
            out.append(line)
    return b"\n".join(out)


def _tensor(t: torch.Tensor) -> str:
    t = t.detach()
    head = f"tensor|{t.dtype}|{tuple(t.shape)}|{t.layout}|"
    try:
        t = t.cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    except Exception:  # sparse, quantized, meta: the printed values are the next best thing
        raw = _ADDRESS.sub("0x?", repr(t)).encode()
    return head + hashlib.sha256(raw).hexdigest()


def _value(v: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> str:
    """A stable text for one attribute value; containers and objects recursively."""
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
        return f"{type(v).__name__}:{v!r}"
    if isinstance(v, (torch.dtype, torch.device, torch.Size, torch.memory_format, torch.layout)):
        return f"torch:{v}"
    if isinstance(v, torch.Tensor):
        return _tensor(v)
    if isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        if a.dtype.hasobject:
            return f"ndarray-obj|{a.shape}|" + _value(a.tolist(), depth + 1, seen)
        return f"ndarray|{a.dtype.str}|{a.shape}|{hashlib.sha256(a.tobytes()).hexdigest()}"
    if isinstance(v, np.generic):
        return f"np:{v.dtype.str}:{v!r}"
    if isinstance(v, enum.Enum):
        return f"enum:{_name(type(v))}.{v.name}"
    if depth > _MAX_DEPTH or id(v) in seen:  # id() only to stop cycles, never hashed
        return f"deep:{_name(type(v))}"
    seen = seen | {id(v)}
    sub = functools.partial(_value, depth=depth + 1, seen=seen)
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__}[" + ",".join(sub(x) for x in v) + "]"
    if isinstance(v, (set, frozenset)):
        return f"{type(v).__name__}{{" + ",".join(sorted(sub(x) for x in v)) + "}"
    if isinstance(v, dict):
        return "dict{" + ",".join(f"{sub(k)}:{sub(x)}" for k, x in v.items()) + "}"
    if isinstance(v, nn.Module):  # a module kept out of _modules (e.g. inside a list)
        h = hashlib.sha256()
        _module(h, "", v, seen)
        return f"module:{h.hexdigest()}"
    if isinstance(v, functools.partial):
        return f"partial({sub(v.func)},{sub(v.args)},{sub(v.keywords)})"
    if isinstance(v, types.MethodType):
        return f"method:{sub(v.__func__)}:{_name(type(v.__self__))}"
    if isinstance(v, types.FunctionType):
        cells = [c.cell_contents for c in v.__closure__ or () if _filled(c)]
        return (f"function:{_name(v)}:{_source(v)}:{sub(v.__defaults__)}:"
                f"{sub(v.__kwdefaults__)}:{sub(cells)}")  # fmt: skip
    if isinstance(v, type):
        return f"class:{_name(v)}:{_source(v)}"
    if callable(v) and not hasattr(v, "__dict__"):  # builtins: torch.relu, math.sqrt, …
        return f"callable:{_name(v)}"
    text = f"{_name(type(v))}:{_ADDRESS.sub('0x?', repr(v))}"
    if hasattr(v, "__dict__"):
        text += ":" + sub(dict(sorted(vars(v).items())))
    return text


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


@functools.lru_cache(maxsize=512)
def _source(obj: Any) -> str:
    """The whole source file of a class or function (module-level constants and helpers that
    ``forward`` uses live there too), else its compiled code; '' for torch's own code."""
    if getattr(obj, "__module__", "").startswith("torch"):
        return ""
    try:
        return inspect.getsource(inspect.getmodule(obj) or obj)
    except (OSError, TypeError):
        pass
    code = getattr(obj, "__code__", None)
    if code is not None:
        return f"{code.co_code.hex()}|{_ADDRESS.sub('0x?', repr(code.co_consts))}"
    return ""
