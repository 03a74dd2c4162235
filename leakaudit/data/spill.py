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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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

    def write_at(self, offset: int, array: np.ndarray) -> None:
        """Overwrite bytes already in the file (a ``SpilledStack`` row) with ``array``'s."""
        a = np.ascontiguousarray(array)
        if offset < 0 or offset + a.nbytes > self._end:
            raise ValueError(f"spill file: write of {a.nbytes} bytes at {offset} past its end")
        with self._lock:
            self._file.seek(offset)
            self._file.write(a.view(np.uint8).reshape(-1).data)

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


class SpilledStack:
    """An (n, ...) array of equal rows kept in a spill file, read and written a few rows at a
    time. Why: the audit keeps one compact map per image and method (8 KB at 64×64 float16); once
    the images are spilled these are what grows with the number of images (0.16 GB for two methods
    at 10 000), yet discovery and the report only ever read a view or a chunk of them.

    Indexing with an int, a slice or an index array reads those rows back as a fresh ndarray
    (further indices in a tuple apply to it); ``np.asarray`` reads everything."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | str, fill: float = np.nan):
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self._store = SpillStore()
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * self.dtype.itemsize
        chunk = np.full((min(1024, max(self.shape[0], 1)), *self._row_shape), fill, self.dtype)
        for start in range(0, self.shape[0], len(chunk)):  # the file holds every row from now on
            self._store.put(chunk[: self.shape[0] - start])

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row_bytes

    def _rows(self, start: int, count: int) -> np.ndarray:
        handle = Spilled(self._store, start * self._row_bytes, (count, *self._row_shape),
                         self.dtype.str)  # fmt: skip
        return handle.load()

    def _positions(self, key: Any) -> np.ndarray | slice:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            return slice(start, max(start, stop)) if step == 1 else np.arange(start, stop, step)
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (self.shape[0],):
                raise IndexError(f"boolean index of shape {idx.shape} for {self.shape[0]} rows")
            return np.flatnonzero(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"rows are indexed by integers, not {idx.dtype}")
        idx = np.where(idx < 0, idx + self.shape[0], idx)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        return idx

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        pos = self._positions(key)
        if isinstance(pos, slice):
            out = self._rows(pos.start, pos.stop - pos.start)
        elif pos.ndim == 0:
            out = self._rows(int(pos), 1)[0]
        else:
            out = np.empty((*pos.shape, *self._row_shape), self.dtype)
            flat = out.reshape(-1, *self._row_shape)
            for j, i in enumerate(pos.reshape(-1)):
                flat[j] = self._rows(int(i), 1)[0]
        if not rest:
            return out
        return out[rest] if out.ndim == len(self._row_shape) else out[(slice(None), *rest)]

    def __setitem__(self, key: Any, values: Any) -> None:
        pos = self._positions(key)
        rows = np.arange(pos.start, pos.stop) if isinstance(pos, slice) else pos.reshape(-1)
        vals = np.broadcast_to(np.asarray(values, self.dtype), (len(rows), *self._row_shape))
        for j, i in enumerate(rows):
            self._store.write_at(int(i) * self._row_bytes, vals[j])

    def chunks(self, size: int = 1024) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``size`` rows, in order."""
        for start in range(0, self.shape[0], size):
            yield self._rows(start, min(size, self.shape[0] - start))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self._rows(0, self.shape[0])
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def astype(self, dtype: Any) -> np.ndarray:
        return np.asarray(self, dtype=dtype)

    def __reduce__(self) -> tuple:
        """Pickled (e.g. results sent between processes) as the plain array: the file is local."""
        return (np.asarray, (self.__array__(),))
