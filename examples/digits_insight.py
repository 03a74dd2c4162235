"""Every insight view on scikit-learn's bundled digits (8×8 grey, offline), for two models.

A 64-30-10 MLP (the founding MNIST viewer's 784-30-10 net, shrunk to 8×8) and a small CNN are
trained (seeded, seconds), every view is rendered to ``OUT/mlp/insight.html`` and
``OUT/cnn/insight.html``, and the MLP's closed-form pixel influence is checked against the
formula written out: ``img_i = Σ_j W0[j, :] · W1[i, j]``.

    python examples/digits_insight.py --out out/digits [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from leakaudit.data.samples import split_indices
from leakaudit.insight.compare_untrained import view_distance
from leakaudit.insight.page import PageOptions, build_page, write_page
from leakaudit.insight.pixel_influence import closed_form_influence, gradient_influence
from leakaudit.models.predict import accuracy
from leakaudit.models.train import train_classifier
from leakaudit.runtime import configure


def mlp(seed: int) -> nn.Module:
    """64-30-10 with a sigmoid hidden layer, as in the founding MLP viewer."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 30), nn.Sigmoid(), nn.Linear(30, 10))


def cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def closed_form_by_hand(model: nn.Sequential) -> np.ndarray:
    """The founding formula as a loop, to check the library's matrix product against."""
    w0 = model[1].weight.detach().double().numpy()
    w1 = model[3].weight.detach().double().numpy()
    out = np.zeros((w1.shape[0], w0.shape[1]))
    for i in range(w1.shape[0]):
        for j in range(w0.shape[0]):
            out[i] += w0[j, :] * w1[i, j]
    return out.reshape(-1, 8, 8, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/digits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", default="200,350,500")
    args = ap.parse_args()
    configure()
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # (N, 8, 8, 1) in [0, 1]
    labels = digits.target.astype(np.int64)
    train, test = split_indices(len(labels), 0.25, seed=args.seed)
    names = [str(k) for k in range(10)]
    shown = test[:10]
    steps = tuple(int(s) for s in args.steps.split(","))
    for name, build, epochs in (("mlp", mlp, 40), ("cnn", cnn, 15)):
        t0 = time.perf_counter()
        model = train_classifier(
            build(args.seed),
            images[train],
            labels[train],
            seed=args.seed,
            epochs=epochs,
            batch_size=32,
            lr=1e-2,
            progress=False,
        ).model
        acc = accuracy(model, images[test], labels[test])
        print(f"{name}: test accuracy {acc:.3f} ({time.perf_counter() - t0:.1f} s to train)")
        if name == "mlp":
            lib = closed_form_influence(model)
            hand = closed_form_by_hand(model)
            grad = gradient_influence(model, images[test])
            print(
                f"  closed form vs Σ_j W0[j,:]·W1[i,j]: max |diff| {np.abs(lib - hand).max():.2e}"
            )
            print(f"  closed form vs mean gradient: 1 − correlation {view_distance(lib, grad):.3f}")
        t0 = time.perf_counter()
        ctx = build_page(
            model,
            names,
            images[shown],
            labels[shown],
            8,
            PageOptions(steps=steps, seed=args.seed),
            title=f"leakaudit insight: digits {name}",
            source=f"digits {name}",
        )
        path = write_page(Path(args.out) / name, ctx)
        print(f"  {path} ({time.perf_counter() - t0:.1f} s); trained vs untrained (1 − corr):")
        for view, d in ctx["distances"].items():
            print(f"    {view}: {d:.3f}")


if __name__ == "__main__":
    main()
