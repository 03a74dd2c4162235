"""Planted tells: a colour mark drawn into an image, returned with its exact mask.

Poisoning gives every class its own colour; ``prevalence`` is the fraction of each class's images
that carry the tell, and the position policy is a fixed corner, a fixed (x, y), or random (a new
place per image). ``TellSpec.kind`` picks the mark: a solid rectangle (default) or one of the
kinds in ``tell_kinds`` (alpha-blended logo, text, frame, noise texture), optionally JPEG
re-compressed. Everything is pure (inputs are never modified) and seeded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from leakaudit.data.samples import Dataset, Sample
from leakaudit.data.tell_kinds import KINDS, draw_kind
from leakaudit.errors import ConfigError

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")

# Distinct, saturated colours; class k gets PALETTE[k % len]. Users can pass their own.
PALETTE: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0),
    (0.0, 0.8, 0.0),
    (0.0, 0.2, 1.0),
    (1.0, 0.85, 0.0),
    (1.0, 0.0, 1.0),
    (0.0, 0.9, 0.9),
    (1.0, 0.5, 0.0),
    (0.5, 0.0, 1.0),
)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 with exclusive ends


def draw_rectangle(
    image: np.ndarray, box: Box, colour: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Return a copy of ``image`` with ``box`` filled by ``colour`` and the mask of changed pixels.

    The box is clipped to the image. The mask marks exactly the pixels whose value changed, so a
    pixel that already had the tell colour is not counted as part of the tell.
    """
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    x0, x1 = max(0, x0), min(w, x1)
    y0, y1 = max(0, y0), min(h, y1)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out, np.zeros((h, w), dtype=bool)
    out[y0:y1, x0:x1] = np.asarray(colour, dtype=image.dtype)
    mask = np.any(out != image, axis=-1)
    return out, mask


@dataclass(frozen=True)
class TellSpec:
    """How to poison a dataset. ``position`` is a corner name, ``"random"``, or an (x, y) tuple.

    ``kind``: "solid" (a filled box, the default), "logo", "text", "border" or "noise" (see
    ``tell_kinds``); ``size`` is always the side of the box the mark is drawn in. ``alpha``
    (logo opacity), ``text`` (the watermark string) and ``noise_sigma`` only affect their kind;
    ``jpeg_quality`` re-compresses the tell's neighbourhood for any kind."""

    size: int = 10
    position: str | tuple[int, int] = "top-left"
    prevalence: float = 1.0
    colours: Mapping[int, tuple[float, float, float]] | None = None
    margin: int = 2
    kind: str = "solid"
    alpha: float = 0.6
    text: str = "TM"
    noise_sigma: float = 0.2
    jpeg_quality: int | None = None

    @property
    def plain(self) -> bool:
        """A solid rectangle without compression: drawn exactly as before kinds existed."""
        return self.kind == "solid" and self.jpeg_quality is None

    def draw(
        self,
        image: np.ndarray,
        box: Box,
        colour: Sequence[float],
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """This spec's mark in ``box``: the new image and the mask of exactly the changed pixels.
        ``rng`` seeds the noise kind (one generator per image keeps images independent)."""
        if self.plain:
            return draw_rectangle(image, box, colour)
        return draw_kind(
            image, box, colour, kind=self.kind, jpeg_quality=self.jpeg_quality, rng=rng,
            alpha=self.alpha, text=self.text, noise_sigma=self.noise_sigma,
        )  # fmt: skip

    def colour_for(self, label: int) -> tuple[float, float, float]:
        if self.colours is not None:
            if label not in self.colours:
                raise ConfigError(f"no tell colour given for class index {label}")
            return tuple(float(c) for c in self.colours[label])  # type: ignore[return-value]
        return PALETTE[label % len(PALETTE)]

    def validate(self, height: int, width: int) -> None:
        if not 0.0 <= self.prevalence <= 1.0:
            raise ConfigError(f"prevalence must be in [0, 1], got {self.prevalence}")
        if self.size < 1 or self.size + 2 * self.margin > min(height, width):
            raise ConfigError(f"tell size {self.size} does not fit a {width}×{height} image")
        if isinstance(self.position, str) and self.position not in (*CORNERS, "random"):
            raise ConfigError(
                f"unknown tell position {self.position!r}: use {CORNERS}, random or x,y"
            )
        if self.kind not in KINDS:
            raise ConfigError(f"unknown tell kind {self.kind!r}: use one of {sorted(KINDS)}")
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"logo alpha must be in (0, 1], got {self.alpha}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 95:
            raise ConfigError(f"jpeg quality must be in 1..95, got {self.jpeg_quality}")
        if self.kind == "text" and not self.text.strip():
            raise ConfigError("text tell needs a non-empty text")

    def box_for(self, height: int, width: int, rng: np.random.Generator) -> Box:
        s, m = self.size, self.margin
        pos = self.position
        if pos == "random":
            x0 = int(rng.integers(0, width - s + 1))
            y0 = int(rng.integers(0, height - s + 1))
        elif isinstance(pos, str):
            x0 = m if "left" in pos else width - m - s
            y0 = m if pos.startswith("top") else height - m - s
        else:
            x0, y0 = int(pos[0]), int(pos[1])
        return (x0, y0, x0 + s, y0 + s)


def plant(
    sample: Sample,
    box: Box,
    colour: Sequence[float],
    spec: TellSpec | None = None,
    rng: np.random.Generator | None = None,
) -> Sample:
    """Draw one tell into a sample; the object region loses the pixels the tell covers.
    ``spec`` picks the kind of mark (default: a solid rectangle)."""
    if spec is None or spec.plain:
        image, mask = draw_rectangle(sample.image, box, colour)
    else:
        image, mask = spec.draw(sample.image, box, colour, rng)
    return sample.with_(image=image, tell=mask, tell_box=box, region=sample.region & ~mask)


def poison(dataset: Dataset, spec: TellSpec, seed: int) -> Dataset:
    """The poisoned twin: each class's images get its colour with probability ``prevalence``.

    Exactly ``round(prevalence * n_class)`` images per class are chosen (seeded), so the
    prevalence is the same in every class and every run.
    """
    if len(dataset) == 0:
        return Dataset([], list(dataset.class_names), list(dataset.problems))
    h, w = dataset[0].shape[:2]
    spec.validate(h, w)
    rng = np.random.default_rng(seed)
    labels = dataset.labels()
    chosen = np.zeros(len(dataset), dtype=bool)
    for k in range(len(dataset.class_names)):
        idx = np.flatnonzero(labels == k)
        n_pick = int(round(spec.prevalence * len(idx)))
        chosen[rng.choice(idx, size=n_pick, replace=False)] = True
    out = []
    for i, s in enumerate(dataset.samples):
        box = spec.box_for(*s.shape[:2], rng)  # drawn for every sample: stable streams
        if chosen[i]:
            # the noise kind's own generator per image: the box stream above stays as it was
            own = None if spec.plain else np.random.default_rng([seed, 0x7E11, i])
            s = plant(s, box, spec.colour_for(s.label), spec, own)
        out.append(s)
    return Dataset(out, list(dataset.class_names), list(dataset.problems))


def remove_tell(sample: Sample, fill: np.ndarray) -> Sample:
    """Cover the tell with a neutral fill image (same shape as the image); keep the masks."""
    if sample.tell is None:
        return sample
    image = np.where(sample.tell[..., None], fill, sample.image).astype(np.float32)
    return sample.with_(image=image)


def swap_tell(sample: Sample, colour: Sequence[float]) -> Sample:
    """Repaint the sample's tell box with another class's colour (the swap test)."""
    if sample.tell_box is None:
        return sample
    image, _ = draw_rectangle(sample.image, sample.tell_box, colour)
    return sample.with_(image=image)
