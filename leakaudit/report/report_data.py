"""``ReportData``: everything a report needs beyond summary.json, as saved in results.npz.

Its own module so that the saved-results checks (``saved.py``) and the file format
(``bundle.py``) can both name it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leakaudit.data.spill import SpilledStack


@dataclass
class ReportData:
    """Everything a report needs beyond summary.json; arrays are in evaluation-data order.

    Per image: ``ids``, ``labels``; per model ``images[model]`` (pred, -1 when unknown;
    confidence, p_true, NaN when unknown); per model and method ``scores[model][method]`` and
    ``maps[model][method]`` (NaN for images a budgeted method did not explain)."""

    meta: dict[str, Any] = field(default_factory=dict)
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    images: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    scores: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    maps: dict[str, dict[str, np.ndarray | SpilledStack]] = field(default_factory=dict)  # N×h×w
    thumbs: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    thumb_regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1), bool))
    thumb_tells: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1), bool))
    panel_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # at thumb size
    # `--insight`: model → (K, H, W, 3) uint8, each class's visualisation in class order
    class_pictures: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def model_names(self) -> list[str]:
        return list(self.meta.get("model_names", []))

    @property
    def methods(self) -> list[str]:
        return list(self.meta.get("methods", []))

    def thumb_of(self, index: int) -> int | None:
        """Row of ``thumbs`` holding evaluation image ``index`` (None: not saved)."""
        idx = self.meta.get("thumb_index", [])
        return idx.index(index) if index in idx else None

    def method_rows(self, model: str, method: str | None) -> dict[str, np.ndarray]:
        """Per image (data order): label, the model's prediction and confidence, and the
        method's scores; empty when nothing was saved for this model and method."""
        scores = self.scores.get(model, {}).get(method)
        if scores is None:
            return {}
        return {"label": self.labels, **self.images[model], **scores}
