"""View 6: the classification viewer — chosen images with every class's probability, the
prediction marked right (green) or wrong (red) on the page. A poisoned model that is confident
on an image whose tell belongs to another class is the tell at work, one image at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from leakaudit.insight.common import batch_tensor, logits_of


@dataclass
class Classified:
    index: int  # position in the images given
    label: int | None  # true class, None when unknown
    predicted: int
    probs: np.ndarray  # (classes,) softmax probabilities

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.predicted


@torch.no_grad()
def classify(
    model: nn.Module, images: np.ndarray, labels: np.ndarray | None = None, batch_size: int = 64
) -> list[Classified]:
    """Softmax probabilities and the predicted class for each NHWC image in [0, 1]."""
    model.eval()
    probs = []
    for start in range(0, len(images), batch_size):
        out = logits_of(model(batch_tensor(images[start : start + batch_size])))
        probs.append(torch.softmax(out.float(), dim=1).numpy())
    p = np.concatenate(probs) if probs else np.zeros((0, 0), np.float32)
    return [
        Classified(i, None if labels is None else int(labels[i]), int(p[i].argmax()), p[i])
        for i in range(len(p))
    ]
