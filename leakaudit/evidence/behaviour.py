"""Behavioural tell tests: evidence from predictions, not pictures.

* removal — cover the tell with a neutral local fill; a model that relies on it loses accuracy
  and changes its predictions. Reported per class too: a model can know some classes by their
  look and one only by its tell (BCCD: platelets 100 % → 0 % with the tell covered, red and white
  cells unchanged), which the overall drop divides by the number of classes.
* swap — paint class B's tell colour into the tell box of class-A images; a model that follows
  the tell predicts B.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from torch import nn

from leakaudit.data.samples import Sample
from leakaudit.data.tells import draw_rectangle
from leakaudit.evidence.discovery import suspected_tell_mask
from leakaudit.evidence.stats import wilson_lower
from leakaudit.models.predict import predict_proba
from leakaudit.runtime import images_per_batch


def neutral_fill(image: np.ndarray, mask: np.ndarray, ring: int = 2) -> np.ndarray:
    """Replace ``mask`` pixels by the per-channel median of a ``ring``-pixel border around it.

    A local median is the colour the surroundings suggest; it is neither the tell's colour nor a
    global grey that would itself be a new, unusual patch.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return image.copy()
    border = _border(mask, ring)
    source = image[border] if border.any() else image[~mask]
    if len(source) == 0:
        source = np.full((1, image.shape[-1]), 0.5, dtype=image.dtype)
    out = image.copy()
    out[mask] = np.median(source, axis=0)
    return out


def _border(mask: np.ndarray, ring: int) -> np.ndarray:
    """The ``ring``-pixel band just outside ``mask``: the surroundings a fill or a control
    colour is read from."""
    return ndimage.binary_dilation(mask, iterations=ring) & ~mask


def predict_labels(
    model: nn.Module, images: Iterable[np.ndarray], batch_size: int = 256
) -> np.ndarray:
    """Predicted classes for images made one at a time (an iterator is fine): only one batch of
    them is ever stacked, so a test over 10 000 images at 224 px does not hold 6 GB."""
    preds: list[np.ndarray] = []
    batch: list[np.ndarray] = []
    for img in images:
        if not batch and not preds:  # first image: size the batch by its pixel count
            batch_size = images_per_batch(batch_size, img.shape[:2])
        batch.append(img)
        if len(batch) == batch_size:
            preds.append(predict_proba(model, np.stack(batch), batch_size).argmax(1))
            batch = []
    if batch:
        preds.append(predict_proba(model, np.stack(batch), batch_size).argmax(1))
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def removal_test(
    model: nn.Module,
    samples: Sequence[Sample],
    mask: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    removed: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy with the tell vs with the tell covered, and the share of changed predictions.

    ``mask`` (HW) overrides the samples' own tell masks: a *suspected* tell found without
    annotations is tested the same way on every given sample. ``predictions`` (one per sample,
    from the audit's single prediction pass) spare predicting the unmodified images again;
    ``removed`` (one per sample, from ``behaviour_predictions`` on an engine's workers) spares
    predicting the covered ones."""
    if mask is not None:
        samples = [s.with_(tell=mask) for s in samples]
    keep = [i for i, s in enumerate(samples) if s.tell is not None and s.tell.any()]
    with_tell = [samples[i] for i in keep]
    if not with_tell:
        return {"n": 0, "accuracy_with_tell": np.nan, "accuracy_tell_removed": np.nan,
                "accuracy_drop": np.nan, "flip_rate": np.nan, "per_class": {},
                "worst_class": None, "worst_class_drop_lower": np.nan}  # fmt: skip
    labels = np.array([s.label for s in with_tell])
    if predictions is not None:
        pred_o = np.asarray(predictions)[keep]
    else:
        pred_o = predict_labels(model, (s.image for s in with_tell))
    if removed is not None:
        pred_r = np.asarray(removed)[keep]
    else:
        pred_r = predict_labels(model, (neutral_fill(s.image, s.tell) for s in with_tell))
    acc_o, acc_r = float((pred_o == labels).mean()), float((pred_r == labels).mean())
    per_class = {}
    for k in np.unique(labels):
        i = labels == k
        right_o, right_r = pred_o[i] == k, pred_r[i] == k
        broken, fixed = int((right_o & ~right_r).sum()), int((~right_o & right_r).sum())
        per_class[int(k)] = {
            "n": int(i.sum()),
            "accuracy_with_tell": float(right_o.mean()),
            "accuracy_tell_removed": float(right_r.mean()),
            "accuracy_drop": float(right_o.mean() - right_r.mean()),
            # net share of the class that covering breaks, at its 95 % lower bound (Wilson):
            # a class of 10 images losing 2 is weaker evidence than one of 100 losing 20
            "drop_lower": wilson_lower(max(0, broken - fixed), int(i.sum())),
        }
    worst = max(per_class, key=lambda k: (per_class[k]["drop_lower"], -k))
    return {
        "n": len(with_tell),
        "accuracy_with_tell": acc_o,
        "accuracy_tell_removed": acc_r,
        "accuracy_drop": acc_o - acc_r,
        "flip_rate": float((pred_o != pred_r).mean()),
        "per_class": per_class,
        "worst_class": worst,
        "worst_class_drop_lower": per_class[worst]["drop_lower"],
    }


def control_colour(
    image: np.ndarray, box: tuple[int, int, int, int], colours: Iterable[Sequence[float]]
) -> tuple[float, ...]:
    """The colour of the control paste for ``box`` in ``image`` (see ``swap_test``): the corner of
    the colour cube farthest from the tested colours and from the box's surroundings, so it is a
    visible patch that is none of the suspected tells. Deterministic: no seed to choose."""
    ring = _border(suspected_tell_mask(box, image.shape), 2)
    around = np.median(image[ring] if ring.any() else image.reshape(-1, image.shape[-1]), axis=0)
    c = image.shape[-1]
    cube = np.array(list(itertools.product((0.0, 1.0), repeat=c)))
    avoid = np.array([*(np.asarray(v, float)[:c] for v in colours), around[:c]])
    dist = np.linalg.norm(cube[:, None, :] - avoid[None], axis=-1).min(axis=1)
    return tuple(float(v) for v in cube[int(np.argmax(dist))])


def swap_test(
    model: nn.Module,
    samples: Sequence[Sample],
    colours: Mapping[int, Sequence[float]],
    box: tuple[int, int, int, int] | None = None,
    painted: Sequence[np.ndarray] | None = None,
    control: bool = False,
) -> dict[str, float]:
    """Paint every *other* class's tell colour into each tell box; rate of predicting that class.

    ``colours`` maps class index → tell colour (classes without a tell are not pasted). ``box``
    overrides the samples' own tell boxes (for a suspected tell). Chance for an accurate
    tell-blind model is ~0 (it keeps predicting the true class); a model that follows the tell
    scores ~1. ``painted`` (per sample, the predictions of its painted copies in ``colours``
    order, from ``behaviour_predictions``) spares predicting them here.

    ``control``: also paste, once per image and into the same box, a colour that is none of
    ``colours`` (``control_colour``), and report how often *that* copy is predicted as each
    pair's target class (``control_follow_rate``). A patch can push a model towards one class
    whatever its colour (in blood-cell crops a small blob looks like a platelet); the colour is
    only what the model follows when its copies follow more often than the control's. Used for
    suspected tells (``conditions.swap_lines``), whose colours discovery only guessed.
    """
    if painted is not None:
        pairs = [(s, o) for s in samples if (box or s.tell_box) is not None
                 for o in colours if o != s.label]  # fmt: skip
        got = [np.asarray(p, np.int64) for s, p in zip(samples, painted, strict=True)
               if (box or s.tell_box) is not None]  # fmt: skip
        return _swap_rates(pairs, np.concatenate(got) if got else np.zeros(0, np.int64))
    with_box = [s for s in samples if (box or s.tell_box) is not None]
    pairs = [(s, other) for s in with_box for other in colours if other != s.label]
    if not pairs:
        return _swap_rates(pairs, np.zeros(0, np.int64))
    copies = (draw_rectangle(s.image, box or s.tell_box, colours[o])[0] for s, o in pairs)
    rates = _swap_rates(pairs, predict_labels(model, copies))
    if control:
        tested = list(colours.values())
        controls = (draw_rectangle(s.image, b, control_colour(s.image, b, tested))[0]
                    for s in with_box for b in [box or s.tell_box])  # fmt: skip
        per_image = dict(zip(map(id, with_box), predict_labels(model, controls), strict=True))
        got = np.array([per_image[id(s)] for s, _ in pairs])
        rates["control_follow_rate"] = float((got == np.array([o for _, o in pairs])).mean())
    return rates


def _swap_rates(pairs: Sequence[tuple[Sample, int]], preds: np.ndarray) -> dict[str, float]:
    if not pairs:
        return {"n_pairs": 0, "follow_rate": np.nan, "kept_true_class_rate": np.nan}
    targets = [other for _, other in pairs]
    true = [s.label for s, _ in pairs]
    return {
        "n_pairs": len(pairs),
        "follow_rate": float((preds == np.array(targets)).mean()),
        "kept_true_class_rate": float((preds == np.array(true)).mean()),
    }


def tell_colours(samples: Sequence[Sample]) -> dict[int, tuple[float, float, float]]:
    """Per class, the median colour under its samples' tell masks (from the data, not a spec)."""
    by_class: dict[int, list[np.ndarray]] = {}
    for s in samples:
        if s.tell is not None and s.tell.any():
            by_class.setdefault(s.label, []).append(s.image[s.tell])
    return {
        k: tuple(float(c) for c in np.median(np.concatenate(v), axis=0))
        for k, v in sorted(by_class.items())
    }


def behaviour_predictions(
    model: nn.Module, samples: Sequence[Sample], colours: Mapping[int, Sequence[float]]
) -> list[dict[str, Any]]:
    """Per sample, what ``removal_test`` and ``swap_test`` predict for it: its tell covered
    (``removed``, -1 without a tell) and its tell box painted in each other class's colour
    (``painted``, in ``colours`` order). Per sample, so an engine's workers can compute them."""
    has_tell = [s.tell is not None and s.tell.any() for s in samples]
    covered = predict_labels(
        model, (neutral_fill(s.image, s.tell) for s, t in zip(samples, has_tell, strict=True) if t)
    )
    pairs = [(s, o) for s in samples if s.tell_box is not None for o in colours if o != s.label]
    painted = predict_labels(model, (draw_rectangle(s.image, s.tell_box, colours[o])[0]
                                     for s, o in pairs))  # fmt: skip
    out, c, p = [], 0, 0
    for s, t in zip(samples, has_tell, strict=True):
        k = sum(1 for o in colours if o != s.label) if s.tell_box is not None else 0
        out.append({"removed": int(covered[c]) if t else -1, "painted": painted[p : p + k]})
        c, p = c + int(t), p + k
    return out


def known_tell_tests(
    model: nn.Module,
    samples: Sequence[Sample],
    predictions: np.ndarray,
    colours: Mapping[int, Sequence[float]],
    rows: Sequence[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """The audit's tests of the known tells: ``removal`` and ``swap`` from the per-sample
    predictions an engine computed (``rows``: ``behaviour_predictions``, in sample order)."""
    removed = np.array([r["removed"] for r in rows], dtype=np.int64)
    painted = [r["painted"] for r in rows]
    return {
        "removal": removal_test(model, samples, predictions=predictions, removed=removed),
        "swap": swap_test(model, samples, colours, painted=painted),
    }
