"""Behavioural region ablation: remove the annotated object, keep the background, re-predict.

Attribution maps are claims; this is the behavioural test of them. Without the object an honest
classifier has nothing left to go on and falls to chance, while a model that reads a background
tell keeps most of its accuracy (the "background-only" test of Xiao et al. 2021, "Noise or Signal:
The Role of Image Backgrounds in Object Recognition", ICLR, where ImageNet models stay far above
chance on object-free images).

The fill must hide the object without adding a new, recognisable thing. Biharmonic inpainting
(``skimage.restoration.inpaint_biharmonic``) is the textbook choice but takes seconds per image.
The default ``"blur"`` fill is fast and close to it for our purpose: the object (dilated by a
couple of pixels, so its anti-aliased outline goes too) is first replaced by the median colour of a
thin ring of background around it, then the whole image is blurred with σ = side/8 (LIME's blur
baseline in this project) and the blurred pixels fill the object's place. The result is a smooth,
locally coloured blob carrying no shape; the background outside the region is untouched.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import ndimage
from torch import nn

from leakaudit.data.samples import Dataset
from leakaudit.evidence.behaviour import predict_labels

Fill = Literal["blur", "median", "grey"]
FILLS: tuple[str, ...] = ("blur", "median", "grey")


def ablate_region(
    image: np.ndarray, region: np.ndarray, fill: Fill = "blur", dilate: int = 2, ring: int = 3
) -> np.ndarray:
    """Copy of ``image`` (HWC float in [0, 1]) with ``region`` replaced by a neutral fill.

    ``"median"``: the ring's median colour, flat; ``"blur"``: as in the module docstring;
    ``"grey"``: constant 0.5 (a flat patch, which a CNN may itself notice)."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}; choose from {FILLS}")
    region = np.asarray(region, dtype=bool)
    img = np.asarray(image, dtype=np.float32)
    if not region.any():
        return img.copy()
    struct = ndimage.generate_binary_structure(2, 1)
    hole = ndimage.binary_dilation(region, struct, iterations=dilate) if dilate > 0 else region
    if fill == "grey":
        return np.where(hole[..., None], np.float32(0.5), img).astype(np.float32)
    border = ndimage.binary_dilation(hole, struct, iterations=ring) & ~hole
    if not border.any():  # the object covers the whole image
        border = ~hole if (~hole).any() else np.ones_like(hole)
    median = np.median(img[border], axis=0) if border.any() else np.full(img.shape[-1], 0.5)
    flat = np.where(hole[..., None], median.astype(np.float32), img)
    if fill == "median":
        return flat.astype(np.float32)
    sigma = max(img.shape[:2]) / 8.0
    blurred = ndimage.gaussian_filter(flat, sigma=(sigma, sigma, 0), mode="reflect")
    return np.where(hole[..., None], blurred, img).astype(np.float32)


def region_ablation(
    model: nn.Module,
    dataset: Dataset,
    fill: Fill = "blur",
    batch_size: int = 256,
    dilate: int = 2,
    predictions: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy with and without the object, against chance.

    Samples with an empty region are skipped and counted (``n_skipped``). ``chance`` is the higher
    of 1/n_classes and the majority-class rate among used samples (a model that always says the
    majority class reaches the latter without looking at anything). ``retained`` =
    (acc_without − chance) / (acc_with − chance): ≈ 0 for an honest model, ≈ 1 for one that needs
    no object at all; NaN when the model is not above chance to begin with. ``predictions`` (one
    per sample of ``dataset``, from the audit's single prediction pass) spare predicting the
    originals again; the ablated images are made and predicted one batch at a time."""
    used = [i for i, s in enumerate(dataset.samples) if np.asarray(s.region).any()]
    n_classes = len(dataset.class_names)
    out: dict[str, Any] = {
        "fill": fill,
        "n_used": len(used),
        "n_skipped": len(dataset) - len(used),
        "accuracy_with": float("nan"),
        "accuracy_without": float("nan"),
        "chance_uniform": 1.0 / n_classes if n_classes else float("nan"),
        "chance_majority": float("nan"),
        "chance": float("nan"),
        "retained": float("nan"),
        "predictions_with": np.zeros(0, dtype=np.int64),
        "predictions_without": np.zeros(0, dtype=np.int64),
        "indices": np.asarray(used, dtype=np.int64),
    }
    if not used:
        return out
    labels = np.array([dataset[i].label for i in used])
    if predictions is not None:
        pred_with = np.asarray(predictions)[used]
    else:
        pred_with = predict_labels(model, (dataset[i].image for i in used), batch_size)
    ablated = (ablate_region(dataset[i].image, dataset[i].region, fill, dilate) for i in used)
    pred_without = predict_labels(model, ablated, batch_size)
    majority = float(np.bincount(labels, minlength=n_classes).max() / len(labels))
    chance = max(out["chance_uniform"], majority)
    acc_with = float((pred_with == labels).mean())
    acc_without = float((pred_without == labels).mean())
    out.update(
        accuracy_with=acc_with,
        accuracy_without=acc_without,
        chance_majority=majority,
        chance=chance,
        retained=(acc_without - chance) / (acc_with - chance) if acc_with > chance else np.nan,
        predictions_with=pred_with,
        predictions_without=pred_without,
    )
    return out
