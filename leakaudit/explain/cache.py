"""On-disk cache of per-image attributions, so re-runs and interrupted runs redo no work.

One ``.npz`` per (model, image, target, method, parameters): the key is a SHA-256 of the model's
fingerprint (weights, code, attributes *and* preprocessing, see ``fingerprint.py``), the image
bytes, the target class, and the explainer's ``describe()``. Everything a stored map depends on
is in the key; the sample's region is not, because no attribution reads it (only scoring does,
and scores are never cached). Each file is written to a temporary name and ``os.replace``d into
place (atomic on POSIX), and it carries an HMAC-SHA256 of its key and arrays under a random
per-cache key (``<root>/hmac.key``, mode 0600): a truncated, garbled, copied or forged file is a
miss and is recomputed, never returned. A key file that others could read or replace (not
yours, group/world-accessible, a link) makes the cache untrusted: it is off for the run, with
one warning. Links below the root are never read or written through. A cache that cannot be
used (read-only, full, not a folder) is found by ``probe()`` before the work, or by a failed
write during it, and is then off for the rest of the run: the audit goes on without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.explain.base import Attribution, Explainer
from leakaudit.explain.fingerprint import model_fingerprint

__all__ = ["AttributionCache", "cache_off_reason", "cached_attribute", "default_cache_dir",
           "model_fingerprint"]  # fmt: skip

FORMAT = 2  # 2: HMAC-authenticated entries; entries of format 1 are misses (other keys)
KEY_FILE = "hmac.key"
_PROBE = ".probe"  # the folder probe() writes its test entry in
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")  # a method name is one plain path component
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_OFF: dict[str, str] = {}  # cache root -> why it is off in this process (for the CLI's line)


class CacheUntrusted(OSError):
    """The key file, or a folder or entry below the root, could be someone else's."""


def default_cache_dir() -> Path:
    """Where attributions are kept unless ``--cache-dir`` says otherwise: ``$LEAKAUDIT_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/leakaudit``, else ``~/.cache/leakaudit`` — a user cache folder, not
    the working directory, so audits do not litter a repository."""
    if os.environ.get("LEAKAUDIT_CACHE_DIR"):
        return Path(os.environ["LEAKAUDIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "leakaudit"


def cache_off_reason(root: str | os.PathLike[str]) -> str | None:
    """Why the cache at ``root`` was switched off in this process, or None if it was not."""
    return _OFF.get(os.path.realpath(root))


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else -1


def _mac(secret: bytes, arrays: dict[str, np.ndarray], key: str) -> str:
    """Covers the key too: a valid entry copied under another image's name is caught."""
    h = hmac.new(secret, f"leakaudit-cache-v{FORMAT}|{key}|".encode(), hashlib.sha256)
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _why(e: OSError) -> str:
    """One line naming the file and the OS error (``[Errno 28] No space left…: '/x'``)."""
    if isinstance(e, CacheUntrusted) or not e.strerror:
        return str(e)
    where = f" ({e.filename})" if e.filename else ""
    return f"{e.strerror}{where}"


def _read_key(path: Path) -> bytes:
    """The secret, after checking nobody else could have read or planted it."""
    fix = f"delete {path} to start a fresh cache (stored maps are then recomputed)"
    if stat.S_ISLNK(os.lstat(path).st_mode):  # FileNotFoundError: there is none yet
        raise CacheUntrusted(f"key file {path} is a symbolic link; {fix}")
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        st = os.fstat(fd)
        raw = os.read(fd, 256)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise CacheUntrusted(f"key file {path} is not a regular file; {fix}")
    if _euid() >= 0 and st.st_uid != _euid():
        raise CacheUntrusted(f"key file {path} is owned by uid {st.st_uid}, not by you; {fix}, "
                             "or use a cache folder of your own (--cache-dir)")  # fmt: skip
    if _euid() >= 0 and st.st_mode & 0o077:
        mode = f"{stat.S_IMODE(st.st_mode):o}"
        raise CacheUntrusted(f"key file {path} is accessible to group/others (mode {mode}); "
                             f"run `chmod 600 {path}`, or {fix}")  # fmt: skip
    if not re.fullmatch(rb"[0-9a-f]{64}", raw):
        raise CacheUntrusted(f"key file {path} is malformed; {fix}")
    return bytes.fromhex(raw.decode())


def _make_key(path: Path) -> bytes:
    """Read the cache's key, creating it first if needed: written in full to a 0600 temporary
    file and linked into place, so no reader sees half a key and a concurrent creator's key
    wins (file systems without hard links: created with O_EXCL, mode 0600)."""
    with contextlib.suppress(FileNotFoundError):
        return _read_key(path)
    new = secrets.token_hex(32).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:
            with contextlib.suppress(FileExistsError):
                out = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW, 0o600)
                with os.fdopen(out, "wb") as f:
                    f.write(new)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _read_key(path)


def _real_folder(path: Path, create: bool) -> None:
    """``path`` is a real folder, not a link (a link is never followed, read or write)."""
    if create:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        raise CacheUntrusted(f"{path} is a link or not a folder; the cache never reads or "
                             "writes through links (delete it)")  # fmt: skip


class AttributionCache:
    """Entries at ``<root>/<method>/<key[:2]>/<key>.npz``; ``enabled=False`` makes it a no-op.

    ``probe=True`` checks at once that the cache is usable (see ``probe``). ``reason`` says why
    a cache was switched off during the run (None while it is on or was never turned on).
    """

    def __init__(
        self, root: str | os.PathLike[str], enabled: bool = True, probe: bool = False
    ) -> None:
        self.root = Path(os.path.realpath(root))  # a link the user chose is resolved once
        self.enabled = enabled
        self.reason: str | None = None
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self._secret: bytes | None = None
        if probe:
            self.probe()

    def key(self, model_hash: str, image: np.ndarray, target: int, params: dict[str, Any]) -> str:
        img = np.ascontiguousarray(image, dtype=np.float32)
        h = hashlib.sha256()
        h.update(f"v{FORMAT}|{model_hash}|{img.shape}|{int(target)}|".encode())
        h.update(json.dumps(params, sort_keys=True, default=str).encode())
        h.update(img.tobytes())
        return h.hexdigest()

    def path(self, method: str, key: str) -> Path:
        if not _NAME.fullmatch(method) or method in (".", ".."):
            raise ValueError(f"cache: {method!r} is not a plain method name")
        return self.root / method / key[:2] / f"{key}.npz"

    def probe(self) -> bool:
        """Create the folder and key, then write, read back and delete a test entry — before
        the expensive work, so a read-only, full or untrusted cache is switched off now (one
        warning) instead of failing after the maps are computed. True when the cache is on."""
        if not self.enabled:
            return False
        key = secrets.token_hex(32)  # concurrent probes never touch each other's entry
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._write(_PROBE, key, {"map": np.arange(4, dtype=np.float32)})
            back = self._read(_PROBE, key)
            os.unlink(self.path(_PROBE, key))
            if back is None or not np.array_equal(back["map"], np.arange(4)):
                raise OSError(f"a test entry written to {self.root} did not read back")
        except OSError as e:
            self.disable(f"{self.root} is not usable: {_why(e)}")
            return False
        _OFF.pop(str(self.root), None)
        return True

    def disable(self, reason: str) -> None:
        """Off for the rest of this run, with one warning per reason (not one per image)."""
        self.enabled = False
        self.reason = reason
        if _OFF.get(str(self.root)) != reason:
            _OFF[str(self.root)] = reason
            print(f"Warning: attribution cache off for this run: {reason}", file=sys.stderr)

    def load(self, method: str, key: str) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None when absent, unreadable, a link or failing its HMAC."""
        if not self.enabled:
            return None
        try:
            self._key()
        except OSError as e:
            self.disable(_why(e))
            return None
        try:
            arrays = self._read(method, key)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception:  # a link, damage or a forgery means: recompute (and overwrite) it
            arrays = None
        if arrays is None:
            self.corrupt += 1
            self.misses += 1
            return None
        self.hits += 1
        return arrays

    def store(self, method: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Write atomically: a reader sees the old entry, no entry, or the whole new one. A
        write that fails (disk full, a link in the way) switches the cache off, not the run."""
        if not self.enabled:
            return
        try:
            self._write(method, key, arrays)
        except OSError as e:
            self.disable(f"could not write to {self.root}: {_why(e)}")

    def _key(self) -> bytes:
        if self._secret is None:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._secret = _make_key(self.root / KEY_FILE)
        return self._secret

    def _read(self, method: str, key: str) -> dict[str, np.ndarray] | None:
        """None for a forged, damaged or foreign entry; FileNotFoundError when there is none."""
        p = self.path(method, key)
        _real_folder(p.parent.parent, create=False)
        _real_folder(p.parent, create=False)
        if not stat.S_ISREG(os.lstat(p).st_mode):
            return None  # a link (never followed) or something else that is no entry
        fd = os.open(p, os.O_RDONLY | _NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            raw = f.read()
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            mac = str(arrays.pop("__mac__"))
        except Exception:
            return None
        if "map" not in arrays or not hmac.compare_digest(mac, _mac(self._key(), arrays, key)):
            return None
        return arrays

    def _write(self, method: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        p = self.path(method, key)
        secret = self._key()
        _real_folder(p.parent.parent, create=True)
        _real_folder(p.parent, create=True)
        buf = io.BytesIO()
        np.savez(buf, __mac__=np.array(_mac(secret, arrays, key)), **arrays)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)  # replaces a link at p itself, never writes through it
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
