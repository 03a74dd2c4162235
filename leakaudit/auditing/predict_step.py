"""The audit's one prediction pass: the model made ready (eval mode, logits only) and every image's
softmax probabilities, reused by accuracy, behaviour, ablation and the suspect checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from leakaudit.data.samples import Dataset
from leakaudit.engines.work import stack_images
from leakaudit.errors import ModelOutputError
from leakaudit.models.predict import (
    FirstOutput,
    as_logits,
    non_finite_error,
    probabilities,
    to_tensor,
)
from leakaudit.runtime import images_per_batch, model_device, resolve_device


def prepare_model(model: nn.Module, probe: np.ndarray, device: torch.device | None) -> nn.Module:
    """The model in eval mode on ``device`` (None: where it is), returning logits only.

    One probe forward pass finds models that return a tuple (→ element 0 if it holds float
    logits) and models whose output cannot be class scores (→ ``ModelOutputError``)."""
    if device is not None:
        model = model.to(device)
    model = model.eval()
    with torch.inference_mode():
        out = model(to_tensor(probe, model_device(model)))
    as_logits(out)  # raises on int / non-tensor outputs
    return FirstOutput(model).eval() if isinstance(out, (tuple, list)) else model


def predict_all(model: nn.Module, data: Dataset, batch_size: int = 256) -> np.ndarray:
    """(N, C) softmax probabilities, the images stacked one batch at a time: the audit's one
    prediction pass, reused by accuracy, behaviour, ablation and the suspect checks."""
    out, bad = [], 0
    if len(data):
        batch_size = images_per_batch(batch_size, data[0].shape[:2])
    for s in range(0, len(data), batch_size):
        batch = stack_images(data.samples[s : s + batch_size])
        probs, n_bad = probabilities(model, batch, batch_size)
        out.append(probs)
        bad += n_bad
    if bad:
        raise non_finite_error(bad, len(data))
    return np.concatenate(out) if out else np.zeros((0, len(data.class_names)), np.float32)


@dataclass
class Predictions:
    """The prediction pass, per image: predicted class, its probability, p of the true class."""

    labels: np.ndarray
    preds: np.ndarray
    confidence: np.ndarray
    p_true: np.ndarray

    def accuracy(self) -> float:
        return float((self.preds == self.labels).mean()) if len(self.labels) else float("nan")


def predict(
    model: nn.Module, name: str, data: Dataset, device: torch.device | str | None
) -> tuple[nn.Module, Predictions]:
    """The prepared model and its predictions on ``data`` (errors name the model)."""
    labels = data.labels()
    n = len(data)
    probs = np.zeros((0, len(data.class_names)), np.float32)
    if n:
        try:
            dev = None if device is None else resolve_device(str(device))
            model = prepare_model(model, data[0].image[None], dev)
            probs = predict_all(model, data)
        except ModelOutputError as e:
            raise ModelOutputError(f"model {name!r}: {e}") from e
    preds = probs.argmax(1) if n else np.array([], dtype=np.int64)
    confidence = probs.max(1) if n else np.array([])
    p_true = probs[np.arange(n), labels] if n else np.array([])
    return model, Predictions(labels, preds, confidence, p_true)
