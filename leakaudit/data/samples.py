"""The value every stage passes around: one image with its label and its masks.

Images are float32 HWC arrays in [0, 1]; masks are boolean HW arrays of the same size. A sample
without a known region has an all-False ``region`` (metrics then give NaN, never a wrong number).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image. ``tell`` is the boolean mask of a planted or known tell, or None."""

    image: np.ndarray
    label: int
    region: np.ndarray
    id: str
    tell: np.ndarray | None = None
    tell_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1), exclusive end

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", printable_id(self.id))

    def with_(self, **changes) -> Sample:
        return replace(self, **changes)


def printable_id(name: str) -> str:
    """A file name that is not valid UTF-8 reaches Python with lone surrogates (os.listdir's
    surrogateescape); tables backed by Arrow strings reject them, and a report cannot show them.
    They become ``\\xNN`` escapes, so the id stays unique and readable."""
    name = str(name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


@dataclass(frozen=True)
class DataProblem:
    """Something skipped or altered while reading data; listed in the report."""

    item: str
    problem: str
    action: str  # "skipped" | "clipped" | "converted" | "empty region" | ...


@dataclass
class Dataset:
    """An ordered list of samples plus the class names their labels index."""

    samples: list[Sample]
    class_names: list[str]
    problems: list[DataProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def subset(self, indices: Sequence[int]) -> Dataset:
        return Dataset([self.samples[i] for i in indices], list(self.class_names), self.problems)

    def images(self) -> np.ndarray:
        """All images stacked as float32 NHWC (only for small sets: training, tests)."""
        return np.stack([s.image for s in self.samples]).astype(np.float32, copy=False)

    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def counts(self) -> dict[str, int]:
        labels = self.labels()
        return {name: int((labels == k).sum()) for k, name in enumerate(self.class_names)}


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split into (train, test) index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])
