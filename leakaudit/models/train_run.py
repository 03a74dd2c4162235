"""Train a bundled model on a dataset on disk and write its checkpoint plus model card.

``leakaudit train`` is this function. The card records the preprocessing *and* the crop options,
because an audit that cuts crops differently from training measures a different model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leakaudit.data.formats import read_dataset
from leakaudit.data.names import check_class_names
from leakaudit.models.fit import fit
from leakaudit.models.load import save_checkpoint


@dataclass
class TrainRun:
    card: Path
    n_samples: int
    counts: dict[str, int]
    val_accuracy: float


def train_and_save(
    data: str | Path,
    format: str,
    out: str | Path,
    mode: str = "image",
    size: int = 64,
    margin: float = 0.5,
    window: float | None = None,
    max_per_class: int | None = None,
    arch: str = "small_cnn",
    epochs: int = 30,
    seed: int = 0,
    progress: bool = True,
) -> TrainRun:
    """Read ``data``, fit ``arch`` (seeded, early stopping), save checkpoint + model card."""
    kw: dict[str, Any] = {"size": size, "seed": seed, "max_per_class": max_per_class}
    if format != "imagefolder":
        kw.update(mode=mode, margin=margin, window=window)
    ds = read_dataset(data, format, **kw)
    check_class_names(ds.class_names, "train")  # crops/inject of its data would split them
    model, report = fit(ds, arch=arch, seed=seed, epochs=epochs, progress=progress)
    prep: dict[str, Any] = {"input_size": size}
    if format != "imagefolder" and mode == "crop":  # audits must cut the same crops
        prep["crop"] = {"margin": margin, "window": window}
    card = save_checkpoint(model, arch, report.get("arch_kwargs", {}), ds.class_names, prep,
                           report, out, seed=seed)  # fmt: skip
    return TrainRun(card, len(ds), ds.counts(), float(report.get("val_accuracy", float("nan"))))
