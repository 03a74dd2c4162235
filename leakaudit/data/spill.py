"""Sample arrays kept on disk instead of in memory, for datasets too big to hold decoded.

A 224-px float32 image is 0.6 MB: 10 000 of them are 6 GB, more than the rest of an audit
together. Every stage reads samples one batch at a time, so the decoded arrays can wait in a
file and be read back on access (from the page cache, ~0.1 ms an image): the process's memory
then stays flat in the number of images. Arrays go to one *unnamed* temporary file
(``tempfile.TemporaryFile`` in ``$TMPDIR``): it has no path, nothing else can open it, and the
system frees it when the process ends, crash or not. Values are stored bit for bit, so an audit
gives the same numbers spilled or not.

``build_dataset`` spills when the decoded images would exceed ``spill_limit_bytes()``
(256 MB; ``LEAKAUDIT_SPILL_MB`` overrides it, 0 spills always).
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import dataclass

import numpy as np

from leakaudit.errors import ConfigError

SPILL_ABOVE_MB = 256.0


def spill_limit_bytes() -> float:
    """Decoded-image bytes above which a dataset's arrays go to a spill file."""
    raw = os.environ.get("LEAKAUDIT_SPILL_MB", "").strip()
    if not raw:
        return SPILL_ABOVE_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise ConfigError(f"LEAKAUDIT_SPILL_MB must be a number of megabytes ≥ 0, got {raw!r}")
    return mb * 2**20


class SpillStore:
    """An append-only unnamed temporary file of arrays; ``put`` returns a handle to read back."""

    def __init__(self) -> None:
        # open for the store's lifetime; closed (and freed) when the store is collected
        self._file = tempfile.TemporaryFile(prefix="leakaudit-spill-")  # noqa: SIM115
        self._end = 0
        self._lock = threading.Lock()  # one file position shared by readers and the writer

    def put(self, array: np.ndarray) -> Spilled:
        a = np.ascontiguousarray(array)
        with self._lock:
            offset = self._end
            self._file.seek(offset)
            self._file.write(a.view(np.uint8).reshape(-1).data)
            self._end += a.nbytes
        return Spilled(self, offset, a.shape, a.dtype.str)

    def read(self, handle: Spilled) -> np.ndarray:
        out = np.empty(handle.shape, np.dtype(handle.dtype))
        view = out.view(np.uint8).reshape(-1).data
        with self._lock:
            self._file.seek(handle.offset)
            got = self._file.readinto(view)
        if got != out.nbytes:  # the file is ours and unnamed: only a full disk gets here
            raise OSError(f"spill file: read {got} of {out.nbytes} bytes")
        return out

    @property
    def nbytes(self) -> int:
        return self._end


@dataclass(frozen=True, eq=False)
class Spilled:
    """Where one array lives in a ``SpillStore``; ``load()`` gives a fresh writable copy."""

    store: SpillStore
    offset: int
    shape: tuple[int, ...]
    dtype: str

    def load(self) -> np.ndarray:
        return self.store.read(self)


def materialize(value: np.ndarray | Spilled | None) -> np.ndarray | None:
    """The array itself, read back from the spill file when it was spilled."""
    return value.load() if isinstance(value, Spilled) else value
