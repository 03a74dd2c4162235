"""Batched inference on a classifier: images as tensors, logits checked, softmax probabilities,
accuracy. Every stage that runs a model forward uses these (training is ``train.py``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from leakaudit.errors import ModelOutputError
from leakaudit.runtime import configure, model_device, release_freed_memory


def to_tensor(images: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """NHWC float [0, 1] numpy → NCHW channels_last float32 tensor (on ``device`` if given)."""
    t = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    if device is not None and torch.device(device).type != "cpu":
        t = t.to(device, non_blocking=True)
    return t.contiguous(memory_format=torch.channels_last)


def as_logits(out: object) -> torch.Tensor:
    """The class-score tensor of a model's output: the output itself, or element 0 of a tuple
    or list (models that also return features or auxiliary heads). Integer or non-tensor
    outputs cannot be class scores, and saying so beats a confusing error three calls later."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ModelOutputError(
            f"the model returned {type(out).__name__}, not a tensor of class scores (logits)"
        )
    if not out.is_floating_point():
        raise ModelOutputError(
            f"the model returned a {out.dtype} tensor; class scores must be float logits"
        )
    return out


class FirstOutput(nn.Module):
    """Wraps a model whose forward returns a tuple so every method sees only the logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return as_logits(self.model(x))


@torch.inference_mode()
def probabilities(
    model: nn.Module, images: np.ndarray, batch_size: int = 256
) -> tuple[np.ndarray, int]:
    """(softmax probabilities, number of images with a NaN/Inf logit), batched on the model's
    device. Callers that predict in chunks add up the counts before raising."""
    configure()
    model.eval()
    device = model_device(model)
    out = []
    bad = 0
    for start in range(0, len(images), batch_size):
        logits = as_logits(model(to_tensor(images[start : start + batch_size], device))).float()
        bad += int((~torch.isfinite(logits).all(dim=1)).sum())
        out.append(torch.softmax(logits, dim=1).cpu().numpy())
        release_freed_memory()
    if not out:
        return np.zeros((0, 0), dtype=np.float32), 0
    return np.concatenate(out), bad


def non_finite_error(bad: int, total: int, what: str = "images") -> ModelOutputError:
    return ModelOutputError(
        f"the model produced non-finite outputs (NaN/Inf) for {bad} of {total} {what}; "
        "check its weights and preprocessing"
    )


def predict_proba(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities for NHWC images, computed in batches on the model's device.

    Raises ``ModelOutputError`` if any image gets a NaN/Inf logit (never a silent number)."""
    probs, bad = probabilities(model, images, batch_size)
    if bad:
        raise non_finite_error(bad, len(images))
    return probs


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    return float((predict_proba(model, images).argmax(1) == np.asarray(labels)).mean())
