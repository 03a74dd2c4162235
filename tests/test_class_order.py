"""A model whose outputs are in another class order than the data's scores below chance; the
audit then names the order that fits (K ≤ 6), and stays quiet for a model that is merely bad."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from leakaudit.auditing.eval_set import accuracy_notes, best_class_order
from leakaudit.data.synthetic import make_shapes


def _audit(labels: np.ndarray, preds: np.ndarray) -> SimpleNamespace:
    rows = pd.DataFrame({"id": [f"s{i}" for i in range(len(labels))], "label": labels,
                         "pred": preds, "method": "saliency"})  # fmt: skip
    doubled = pd.concat([rows, rows.assign(method="lime")])  # one row per method, as audits have
    return SimpleNamespace(per_sample=doubled, eval_accuracy=float((labels == preds).mean()))


def test_a_rotated_output_order_is_named() -> None:
    data = make_shapes(30, seed=0, size=24, n_classes=3)
    labels = data.labels()
    preds = (labels + 1) % 3  # output j is class j - 1
    preds[:2] = labels[:2]  # a couple of lucky hits: accuracy near 0, not exactly
    order, acc = best_class_order(_audit(labels, preds), data)
    names = data.class_names
    assert order == [names[2], names[0], names[1]] and acc > 0.9
    notes = accuracy_notes("model", _audit(labels, preds), data)
    assert len(notes) == 2 and f"--classes {','.join(order)}" in notes[1]


def test_a_merely_bad_model_gets_no_order() -> None:
    data = make_shapes(30, seed=0, size=24, n_classes=3)
    labels = data.labels()
    preds = np.random.default_rng(0).integers(0, 3, len(labels))
    assert best_class_order(_audit(labels, preds), data) is None
    assert best_class_order(_audit(labels, labels.copy()), data) is None  # already right
