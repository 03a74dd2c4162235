"""Seeded training of the bundled architectures (prediction: ``predict.py``).

Training is to convergence (a poorly trained clean model spreads its attribution and narrows the
clean/poisoned gap): Adam with a one-cycle schedule, light flip augmentation off by default
because a flip would move a corner tell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leakaudit.models.predict import to_tensor
from leakaudit.runtime import configure, model_device


@dataclass
class TrainResult:
    model: nn.Module
    train_accuracy: float
    epochs: int
    history: list[float]


def train_classifier(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 3e-3,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` in place on NHWC images; deterministic for a given seed."""
    configure()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = model.to(memory_format=torch.channels_last)
    device = model_device(model)  # train where the model is (``model.to(device)`` first)
    x_all = to_tensor(images)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(y_all)
    steps = epochs * max(1, (n + batch_size - 1) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        order = torch.from_numpy(rng.permutation(n))
        correct = 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb, yb = x_all[idx].to(device), y_all[idx].to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += int((logits.argmax(1) == yb).sum())
        acc = correct / n
        history.append(acc)
        bar.set_postfix(acc=f"{acc:.3f}")
    model.eval()
    return TrainResult(model, history[-1] if history else float("nan"), epochs, history)
