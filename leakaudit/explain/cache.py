"""On-disk cache of per-image attributions, so re-runs and interrupted runs redo no work.

One ``.npz`` per (model, image, target, method, parameters): the key is a SHA-256 of the model's
fingerprint (weights *and* code *and* preprocessing, see ``model_fingerprint``), the image bytes,
the target class, and the explainer's ``describe()``. Everything a stored map depends on is in
the key; the sample's region is not, because no attribution reads it (only scoring does, and
scores are never cached). Each file is written
to a temporary name and ``os.replace``d into place (atomic on POSIX), and it carries a SHA-256
of its own arrays: a truncated, garbled or foreign file is treated as a miss and recomputed,
never returned.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leakaudit.explain.base import Attribution, Explainer

FORMAT = 1


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of everything the model's outputs depend on, so no cache entry outlives a change.

    Weights alone are not enough: two TorchScript files with the same weights and different
    ``forward`` code, or the same weights behind RGB vs BGR preprocessing, compute different maps.
    Covered: every ``state_dict`` entry (name, dtype, shape, bytes); every submodule's type,
    ``extra_repr()`` (layer settings, the preprocessing wrapper's channel order) and code —
    TorchScript code of each scripted submodule, Python source of each module class.
    """
    h = hashlib.sha256(b"fingerprint-v2|")
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    for name, module in model.named_modules():
        h.update(f"module|{name}|{_module_code(module)}".encode())
    return h.hexdigest()


def _module_code(module: nn.Module) -> str:
    """Type, settings and code of one module (not its children: they are hashed themselves)."""
    kind = type(module)
    parts = [f"{kind.__module__}.{kind.__qualname__}"]
    if isinstance(module, torch.jit.ScriptModule):
        parts.append(str(getattr(module, "original_name", "")))
        with contextlib.suppress(Exception):  # a module without forward has no code
            parts.append(module.code)
    else:
        with contextlib.suppress(Exception):
            parts.append(module.extra_repr())
        parts.append(_class_source(kind))
    return "|".join(parts)


@functools.lru_cache(maxsize=256)
def _class_source(kind: type) -> str:
    """Source of a module class (user architectures change between runs); '' when unavailable."""
    try:
        return inspect.getsource(kind)
    except (OSError, TypeError):
        return ""


def _array_digest(arrays: dict[str, np.ndarray], key: str) -> str:
    """Covers the key too: a valid entry copied under another image's name is caught."""
    h = hashlib.sha256(key.encode())
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where attributions are kept unless ``--cache-dir`` says otherwise: ``$LEAKAUDIT_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/leakaudit``, else ``~/.cache/leakaudit`` — a user cache folder, not
    the working directory, so audits do not litter a repository."""
    if os.environ.get("LEAKAUDIT_CACHE_DIR"):
        return Path(os.environ["LEAKAUDIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leakaudit"


class AttributionCache:
    """Entries at ``<root>/<method>/<key[:2]>/<key>.npz``; ``enabled=False`` makes it a no-op."""

    def __init__(self, root: str | os.PathLike[str], enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self.corrupt = 0

    def key(self, model_hash: str, image: np.ndarray, target: int, params: dict[str, Any]) -> str:
        img = np.ascontiguousarray(image, dtype=np.float32)
        h = hashlib.sha256()
        h.update(f"v{FORMAT}|{model_hash}|{img.shape}|{int(target)}|".encode())
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        h.update(img.tobytes())
        return h.hexdigest()

    def path(self, method: str, key: str) -> Path:
        return self.root / method / key[:2] / f"{key}.npz"

    def load(self, method: str, key: str) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None when absent, unreadable or failing its checksum."""
        if not self.enabled:
            return None
        p = self.path(method, key)
        if not p.exists():
            self.misses += 1
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            stored = str(arrays.pop("__checksum__"))
            if stored != _array_digest(arrays, key) or "map" not in arrays:
                raise ValueError("checksum mismatch")
        except Exception:  # any damage means: recompute (and overwrite) this entry
            self.corrupt += 1
            self.misses += 1
            return None
        self.hits += 1
        return arrays

    def store(self, method: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically: a reader sees the old entry, no entry, or the whole new one."""
        if not self.enabled:
            return
        p = self.path(method, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, __checksum__=np.array(_array_digest(arrays, key)), **arrays)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def cached_attribute(
    explainer: Explainer,
    model_hash: str,
    images: np.ndarray,
    targets: np.ndarray,
    cache: AttributionCache | None,
    batch_size: int = 64,
) -> Attribution:
    """``explainer.attribute`` that serves stored images and computes only the misses.

    Misses are computed ``batch_size`` images at a time and each batch is stored before the
    next starts, so an interrupted run resumes from what was stored. Extras are stored per
    image; ragged ones (LIME's NaN-padded ``weights``) are re-padded to the widest image.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if cache is None or not cache.enabled:
        return explainer.attribute(images, targets)
    params = explainer.describe()
    method = explainer.name
    keys = [cache.key(model_hash, img, t, params) for img, t in zip(images, targets, strict=True)]
    found: list[dict[str, np.ndarray] | None] = [cache.load(method, k) for k in keys]
    missing = [i for i, f in enumerate(found) if f is None]
    reduction = explainer.reduction
    for start in range(0, len(missing), batch_size):
        idx = missing[start : start + batch_size]
        att = explainer.attribute(images[idx], targets[idx])
        reduction = att.reduction
        for j, i in enumerate(idx):
            entry = {"map": att.maps[j], **{k: _trim(v[j]) for k, v in att.extras.items()}}
            cache.store(method, keys[i], entry)
            found[i] = entry
    return _assemble(found, images.shape[1:3], method, reduction)


def _trim(a: np.ndarray) -> np.ndarray:
    """Drop a 1-D float extra's trailing NaN padding (it depends on the batch it came from)."""
    if a.ndim == 1 and a.dtype.kind == "f":
        valid = np.flatnonzero(~np.isnan(a))
        return a[: valid[-1] + 1 if len(valid) else 0]
    return a


def _assemble(
    entries: list[dict[str, np.ndarray] | None], hw: tuple[int, ...], method: str, reduction: str
) -> Attribution:
    if not entries:
        return Attribution(np.zeros((0, *hw), np.float32), method, reduction)
    maps = np.stack([e["map"] for e in entries]).astype(np.float32, copy=False)  # type: ignore[index]
    extras: dict[str, np.ndarray] = {}
    for name in entries[0]:  # type: ignore[union-attr]
        if name == "map":
            continue
        parts = [np.asarray(e[name]) for e in entries]  # type: ignore[index]
        if all(p.shape == parts[0].shape for p in parts):
            extras[name] = np.stack(parts)
        else:  # ragged 1-D (LIME weights): pad with NaN like Lime does
            width = max(len(p) for p in parts)
            out = np.full((len(parts), width), np.nan, dtype=np.float32)
            for i, p in enumerate(parts):
                out[i, : len(p)] = p
            extras[name] = out
    return Attribution(maps, method, reduction, extras)
