"""The planted-tell experiment as one function: data → tells → two models → audit → result.

A clean model is trained on clean shapes, a poisoned model on their poisoned twin (one colour
per class). Both are explained on the *same* poisoned evaluation images, so any difference in
where their attribution lands comes from what each model learned.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.model_audit import audit_model
from leakaudit.auditing.verdict import Thresholds
from leakaudit.data.samples import Dataset, split_indices
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.explain.lime import LIME_SAMPLES
from leakaudit.explain.registry import method_params
from leakaudit.models.predict import accuracy
from leakaudit.models.train import train_classifier
from leakaudit.models.zoo import build
from leakaudit.runtime import configure


@dataclass(frozen=True)
class DemoConfig:
    """Defaults measured to finish in about two minutes on 2 CPU cores (see README)."""

    seed: int = 0
    n_images: int = 3000
    test_fraction: float = 0.2
    size: int = 64
    n_classes: int = 4
    epochs: int = 12
    batch_size: int = 64
    width: int = 16
    n_eval: int = 200
    tell_size: int = 10
    tell_position: str | tuple[int, int] = "top-left"
    prevalence: float = 1.0
    lime_samples: int = LIME_SAMPLES
    lime_segments: int = 50
    lime_baseline: str = "blur"
    n_gallery: int = 8

    @classmethod
    def quick(cls, seed: int = 0) -> DemoConfig:
        """A small configuration (~30 s) for tests and smoke runs; same pipeline, less of it.

        Smaller batches give the clean model enough steps to learn shapes from 1 280 images."""
        return cls(seed=seed, n_images=1600, size=48, epochs=10, batch_size=32, n_eval=48,
                   tell_size=8, lime_samples=200, lime_segments=30, n_gallery=4)  # fmt: skip


def _gallery_indices(labels: np.ndarray, n: int, n_classes: int) -> list[int]:
    """The first images of each class in turn, so every class is shown."""
    per_class = [list(np.flatnonzero(labels == k)) for k in range(n_classes)]
    out: list[int] = []
    while len(out) < min(n, len(labels)):
        progressed = False
        for idx in per_class:
            if idx and len(out) < n:
                out.append(int(idx.pop(0)))
                progressed = True
        if not progressed:
            break
    return sorted(out)


def train_model(
    c: DemoConfig,
    data: Dataset,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    desc: str,
    progress: bool = True,
) -> tuple[nn.Module, float]:
    """Train the demo's SmallCNN on ``train_idx``; return it and its accuracy on ``test_idx``."""
    train, test = data.subset(train_idx), data.subset(test_idx)
    result = train_classifier(
        build("small_cnn", c.n_classes, seed=c.seed + 3, width=c.width),
        train.images(),
        train.labels(),
        seed=c.seed + 3,
        epochs=c.epochs,
        batch_size=c.batch_size,
        progress=progress,
        desc=desc,
    )
    return result.model, accuracy(result.model, test.images(), test.labels())


def run_demo(
    config: DemoConfig, thresholds: Thresholds | None = None, progress: bool = True
) -> AuditResult:
    configure()
    thresholds = thresholds or Thresholds()
    c = config
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    spec = TellSpec(size=c.tell_size, position=c.tell_position, prevalence=c.prevalence)
    clean = make_shapes(c.n_images, seed=c.seed, size=c.size, n_classes=c.n_classes)
    poisoned = poison(clean, spec, seed=c.seed + 1)
    train_idx, test_idx = split_indices(len(clean), c.test_fraction, seed=c.seed + 2)
    timings["data"] = time.perf_counter() - t_start

    models, own_acc = {}, {}
    for name, data in (("clean", clean), ("poisoned", poisoned)):
        t0 = time.perf_counter()
        models[name], own_acc[name] = train_model(
            c, data, train_idx, test_idx, f"train {name}", progress
        )
        timings[f"train_{name}"] = time.perf_counter() - t0

    eval_data = poisoned.subset(test_idx[: c.n_eval])
    gallery = _gallery_indices(eval_data.labels(), c.n_gallery, c.n_classes)
    methods = demo_methods(c, lime=True)
    audits = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        audits[name] = audit_model(
            model,
            name,
            eval_data,
            methods,
            accuracy=own_acc[name],
            thresholds=thresholds,
            colours={k: spec.colour_for(k) for k in range(c.n_classes)},
            gallery=gallery,
            progress=progress,
        )
        timings[f"audit_{name}"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    cfg = asdict(c)
    cfg["tell_colours"] = {clean.class_names[k]: spec.colour_for(k) for k in range(c.n_classes)}
    notes = [
        "Clean model trained on clean images; poisoned model trained on the poisoned twin "
        f"(tell prevalence {c.prevalence:g}, {c.tell_size}×{c.tell_size} px at {c.tell_position}).",
        "Both models are explained on the same poisoned evaluation images, for the true class.",
        "Accuracy is each model's own test set (clean model: clean images; poisoned: poisoned).",
    ]
    return AuditResult(
        title="leakaudit demo: planted colour-rectangle tells",
        class_names=list(clean.class_names),
        models=audits,
        eval_data=eval_data,
        gallery=gallery,
        seed=c.seed,
        config=cfg,
        thresholds=thresholds,
        notes=notes,
        timings=timings,
    )


def demo_methods(c: DemoConfig, lime: bool) -> dict[str, dict[str, Any]]:
    """The demo's methods and settings (saliency, and LIME unless switched off); the power
    sweep audits with the same."""
    names = ["saliency", "lime"] if lime else ["saliency"]
    return method_params(names, lime_samples=c.lime_samples, lime_segments=c.lime_segments,
                         lime_baseline=c.lime_baseline, seed=c.seed + 4)  # fmt: skip
