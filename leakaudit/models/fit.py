"""Training a user-facing model on a read dataset, with early stopping on a held-out split.

``train.train_classifier`` trains for a fixed schedule (right for the synthetic benchmark); real
datasets need a validation split to know when to stop, so this loop keeps the best weights by
validation loss and stops after ``patience`` epochs without improvement. The split is stratified
and seeded so each class (BCCD's few platelets included) is represented in validation.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from leakaudit.data.samples import Dataset
from leakaudit.errors import ConfigError, DatasetError
from leakaudit.models.predict import to_tensor
from leakaudit.models.zoo import build
from leakaudit.runtime import configure


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded (train, val) indices with ``val_fraction`` of each class (at least one if ≥ 2)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


def check_split(dataset: Dataset, val_fraction: float) -> None:
    """``DatasetError`` for data ``stratified_split`` cannot split into a model worth keeping:
    images in fewer than 2 classes, or a class with 1 image (it could not be both trained on
    and validated; with none validated the accuracy is NaN). Empty classes are ignored."""
    counts = dataset.counts()
    present = {n: c for n, c in counts.items() if c}
    if len(present) < 2:
        raise DatasetError(
            f"training needs images in at least 2 classes; {len(present)} of {len(counts)} "
            f"class(es) have images ({', '.join(present) or 'none'})"
        )
    single = [n for n, c in present.items() if c < 2]
    if val_fraction > 0 and single:
        names = ", ".join(single[:10]) + (", …" if len(single) > 10 else "")
        raise DatasetError(
            "training needs ≥ 2 images in every class to split them into training and "
            f"validation (audit --train first holds out its test images); {len(single)} of "
            f"{len(present)} classes have 1 image: {names}"
        )


class BatchSource:
    """``dataset``'s images at ``index`` as NCHW tensors, read one batch at a time: a training
    set is never stacked whole (10 000 crops at 224 px are 6 GB as float32), and a spilled
    dataset (``data/spill.py``) stays on disk. ``x[i]`` takes an int slice or index tensor."""

    def __init__(self, dataset: Dataset, index: np.ndarray, device: torch.device) -> None:
        self.dataset, self.index, self.device = dataset, np.asarray(index), device

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, which: slice | torch.Tensor) -> torch.Tensor:
        rows = self.index[which] if isinstance(which, slice) else self.index[which.cpu().numpy()]
        return to_tensor(np.stack([self.dataset[int(i)].image for i in rows]), self.device)


@torch.no_grad()
def _recalibrate_bn(model: nn.Module, x: BatchSource, bs: int) -> None:
    """Re-estimate BatchNorm statistics on the training images with the current weights.

    With few batches per epoch and a high learning rate the running averages lag the weights so
    far that eval-mode accuracy sits at chance for epochs (seen on BCCD crops) and early stopping
    would stop on noise; an exact average over one pass fixes that for a third of an epoch's cost.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for s in range(0, len(x), bs):
        if min(bs, len(x) - s) >= 2:
            model(x[s : s + bs])
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


@torch.inference_mode()
def _evaluate(model: nn.Module, x: BatchSource, y: torch.Tensor, bs: int) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    for s in range(0, len(y), bs):
        logits = model(x[s : s + bs])
        loss += float(nn.functional.cross_entropy(logits, y[s : s + bs], reduction="sum"))
        correct += int((logits.argmax(1) == y[s : s + bs]).sum())
    n = max(1, len(y))
    return loss / n, correct / n


def fit(
    dataset: Dataset,
    arch: str = "small_cnn",
    seed: int = 0,
    epochs: int = 30,
    val_fraction: float = 0.15,
    patience: int = 3,
    progress: bool = True,
    min_epochs: int = 5,
    batch_size: int = 64,
    lr: float = 3e-3,
    arch_kwargs: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``arch`` (a zoo name) on ``dataset``; return the best model (eval mode) and a report
    dict (split sizes, per-epoch history, best epoch, train/val accuracy) for the model card.
    Stops after ``patience`` epochs without a better validation loss, not before ``min_epochs``.
    ``device`` (default CPU) is where the model and the training tensors live.
    """
    if len(dataset) < 4:
        raise DatasetError(f"need at least 4 samples to train, got {len(dataset)}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    check_split(dataset, val_fraction)
    if epochs < 1 or patience < 1:
        raise ConfigError("epochs and patience must be ≥ 1")
    configure()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = dataset.labels()
    tr, va = stratified_split(labels, val_fraction, seed)
    dev = torch.device(device or "cpu")
    x_tr, y_tr = BatchSource(dataset, tr, dev), torch.from_numpy(labels[tr]).to(dev)
    x_va, y_va = BatchSource(dataset, va, dev), torch.from_numpy(labels[va]).to(dev)
    kwargs = dict(arch_kwargs or {})
    try:
        model = build(arch, len(dataset.class_names), **kwargs)
    except KeyError as e:
        raise ConfigError(str(e)) from e
    model = model.to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.CrossEntropyLoss()

    history: list[dict[str, float]] = []
    best_state, best_loss, best_epoch, bad = None, float("inf"), 0, 0
    n = len(y_tr)
    bar = tqdm(range(epochs), desc=f"fit {arch}", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        order = torch.from_numpy(rng.permutation(n)).to(dev)
        correct, seen = 0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            logits = model(x_tr[idx])
            loss = loss_fn(logits, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((logits.argmax(1) == y_tr[idx]).sum())
            seen += len(idx)
        sched.step()
        _recalibrate_bn(model, x_tr, 256)
        train_acc = correct / max(1, seen)
        if len(va):
            val_loss, val_acc = _evaluate(model, x_va, y_va, 256)
        else:
            val_loss, val_acc = float("nan"), float("nan")
        history.append({"train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc})
        bar.set_postfix(acc=f"{train_acc:.3f}", val=f"{val_acc:.3f}")
        if not len(va):
            continue
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, bad = val_loss, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= patience and epoch + 1 >= min_epochs:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best = history[best_epoch - 1] if best_epoch else history[-1]
    report = {
        "arch": arch,
        "arch_kwargs": kwargs,
        "seed": seed,
        "classes": list(dataset.class_names),
        "n_train": len(tr),
        "n_val": len(va),
        "val_fraction": val_fraction,
        "epochs_max": epochs,
        "epochs_run": len(history),
        "best_epoch": best_epoch or len(history),
        "stopped_early": len(history) < epochs,
        "train_accuracy": _evaluate(model, x_tr, y_tr, 256)[1],
        "val_accuracy": best["val_accuracy"],
        "val_loss": best["val_loss"],
        "history": history,
    }
    return model, report
