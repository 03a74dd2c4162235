"""The value every stage passes around: one image with its label and its masks.

Images are float32 HWC arrays in [0, 1]; masks are boolean HW arrays of the same size. A sample
without a known region has an all-False ``region`` (metrics then give NaN, never a wrong number).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from leakaudit.data.spill import Spilled, SpillStore, materialize


class Sample:
    """One image. ``tell`` is the boolean mask of a planted or known tell, or None.

    Immutable (``with_`` makes a changed copy). The arrays may live in a spill file
    (``data/spill.py``): ``image``, ``region`` and ``tell`` then read them back on every access,
    so a list of samples costs no memory for pixels, and a stage holds only what it uses."""

    __slots__ = ("_image", "_region", "_tell", "id", "label", "tell_box")

    def __init__(
        self,
        image: np.ndarray | Spilled,
        label: int,
        region: np.ndarray | Spilled,
        id: str,
        tell: np.ndarray | Spilled | None = None,
        tell_box: tuple[int, int, int, int] | None = None,  # (x0, y0, x1, y1), exclusive end
    ) -> None:
        init = object.__setattr__
        init(self, "_image", image)
        init(self, "label", label)
        init(self, "_region", region)
        init(self, "id", printable_id(id))
        init(self, "_tell", tell)
        init(self, "tell_box", tell_box)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Sample is immutable (set {name!r} with .with_())")

    @property
    def image(self) -> np.ndarray:
        return materialize(self._image)

    @property
    def region(self) -> np.ndarray:
        return materialize(self._region)

    @property
    def tell(self) -> np.ndarray | None:
        return materialize(self._tell)

    @property
    def shape(self) -> tuple[int, ...]:
        """The image's shape, without reading a spilled image back."""
        return tuple(self._image.shape)

    @property
    def has_tell(self) -> bool:
        """Whether a tell mask is attached (it may still be empty), without reading it."""
        return self._tell is not None

    @property
    def spilled(self) -> bool:
        return isinstance(self._image, Spilled)

    def _fields(self) -> dict:
        return {"image": self._image, "label": self.label, "region": self._region,
                "id": self.id, "tell": self._tell, "tell_box": self.tell_box}  # fmt: skip

    def with_(self, **changes) -> Sample:
        """A copy with ``changes``; arrays not changed stay where they are (memory or disk)."""
        return Sample(**{**self._fields(), **changes})

    def spill(self, store: SpillStore) -> Sample:
        """The same sample with its arrays moved into ``store``."""
        moved = {k: store.put(v) for k in ("image", "region", "tell")
                 if isinstance(v := getattr(self, "_" + k), np.ndarray)}  # fmt: skip
        return self.with_(**moved)

    def __getstate__(self) -> dict:
        """Pickled (e.g. for a Ray worker) with the arrays themselves: a spill file is local."""
        return {**self._fields(), "image": self.image, "region": self.region, "tell": self.tell}

    def __setstate__(self, state: dict) -> None:
        Sample.__init__(self, **state)

    def __repr__(self) -> str:
        where = "spilled" if self.spilled else "in memory"
        return f"Sample(id={self.id!r}, label={self.label}, {where})"


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

    def spill(self, store: SpillStore | None = None) -> Dataset:
        """The same dataset with every sample's arrays in a spill file (``data/spill.py``)."""
        store = store or SpillStore()
        return Dataset([s.spill(store) for s in self.samples], list(self.class_names),
                       self.problems)  # fmt: skip

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
