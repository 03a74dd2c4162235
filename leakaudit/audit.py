"""Explain, score and judge one model on one evaluation set. Returns values; renders nothing.

The evaluation images are explained batch by batch; only per-sample scores and the few maps the
report's gallery shows are kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from leakaudit import scores
from leakaudit.ablation import region_ablation
from leakaudit.behaviour import removal_test, swap_test, tell_colours
from leakaudit.cache import AttributionCache, cached_attribute, model_fingerprint
from leakaudit.data.samples import Dataset
from leakaudit.discovery import SuspectedTell, box_iou, discover_tells, suspected_tell_mask
from leakaudit.explain import make_explainer
from leakaudit.models.train import predict_proba
from leakaudit.sanity import SanityResult, randomisation_check
from leakaudit.verdict import Condition, Thresholds, build_conditions, suspect_conditions, verdict

SCORE_COLUMNS = ("outside_mass", "tell_mass", "tell_hit")


@dataclass
class ModelAudit:
    """Everything measured for one model; ``per_sample`` has one row per (image, method)."""

    name: str
    accuracy: float  # on the model's own test set (given by the caller)
    eval_accuracy: float  # on the evaluation images that were explained
    per_sample: pd.DataFrame
    behaviour: dict[str, dict[str, float]]
    conditions: list[Condition]
    verdict: str
    method_params: dict[str, dict[str, Any]]
    gallery_maps: dict[str, np.ndarray]  # method -> (G, H, W) maps of the gallery images
    seconds: dict[str, float] = field(default_factory=dict)
    suspects: list[Suspect] = field(default_factory=list)
    sanity: dict[str, SanityResult] = field(default_factory=dict)
    ablation: dict[str, Any] = field(default_factory=dict)

    def method_means(self) -> dict[str, dict[str, float]]:
        return summarise(self.per_sample)


def summarise(per_sample: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per method: mean of each score over the images where it is defined (NaN-aware)."""
    out = {}
    for method, g in per_sample.groupby("method", sort=False):
        out[str(method)] = {
            "outside_mass": _nanmean(g["outside_mass"]),
            "tell_mass": _nanmean(g["tell_mass"]),
            "tell_top_rate": _nanmean(g["tell_hit"]),
            "n": len(g),
            "n_with_region": int(g["outside_mass"].notna().sum()),
            "n_with_tell": int(g["tell_mass"].notna().sum()),
        }
    return out


def per_class_table(per_sample: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Mean scores per (method, class) plus an 'all' row per method."""
    df = per_sample.copy()
    df["class"] = [class_names[i] for i in df["label"]]
    cols = list(SCORE_COLUMNS)
    by_class = df.groupby(["method", "class"], sort=False)[cols].mean().reset_index()
    overall = df.groupby("method", sort=False)[cols].mean().reset_index()
    overall["class"] = "all"
    counts = df.groupby(["method", "class"], sort=False).size().rename("n").reset_index()
    by_class = by_class.merge(counts, on=["method", "class"])
    overall["n"] = df.groupby("method", sort=False).size().values
    return pd.concat([by_class, overall], ignore_index=True)


def _nanmean(x) -> float:
    arr = np.asarray(x, dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


@dataclass(frozen=True)
class Checks:
    """Which evidence beyond the attribution scores an audit gathers (all on by default)."""

    behaviour: bool = True  # tell removal / swap where tells are known
    discovery: bool = True  # suspected tells without annotations, then tested by behaviour
    sanity: bool = True  # model-parameter randomisation per method
    ablation: bool = True  # remove the object, keep the background
    discovery_method: str = "saliency"
    sanity_images: int = 12
    seed: int = 0


def audit_model(
    model: nn.Module,
    name: str,
    data: Dataset,
    methods: dict[str, dict[str, Any]],
    accuracy: float,
    thresholds: Thresholds,
    colours: dict[int, tuple[float, float, float]] | None = None,
    gallery: Sequence[int] = (),
    batch_size: int = 64,
    progress: bool = True,
    checks: Checks | None = None,
    cache: AttributionCache | None = None,
) -> ModelAudit:
    """Explain every image of ``data`` for its true class with each method, score, judge.

    ``colours`` (class → tell colour) drive the swap test; by default they are read from the
    pixels under the known tell masks. With a ``cache``, attributions computed before for the
    same model, image, method and parameters are reused, so an interrupted audit resumes."""
    checks = checks or Checks()
    model_hash = model_fingerprint(model) if cache is not None and cache.enabled else ""
    timings: dict[str, float] = {}
    labels = data.labels()
    t0 = time.perf_counter()
    all_images = data.images() if len(data) else None
    preds = predict_proba(model, all_images).argmax(1) if len(data) else np.array([])
    timings["predict"] = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    gallery = list(gallery)
    gallery_maps: dict[str, np.ndarray] = {}
    params: dict[str, dict[str, Any]] = {}
    discovery_maps: list[np.ndarray] = []
    find_with = checks.discovery_method if checks.discovery_method in methods else None
    for method, kwargs in methods.items():
        explainer = make_explainer(method, model, **kwargs)
        params[method] = explainer.describe()
        kept = {}
        t0 = time.perf_counter()
        bar = tqdm(total=len(data), desc=f"{name}: {method}", unit="img", disable=not progress)
        for start in range(0, len(data), batch_size):
            batch = data.samples[start : start + batch_size]
            images = all_images[start : start + batch_size]
            attr = cached_attribute(
                explainer, model_hash, images, labels[start : start + batch_size], cache
            )
            if method == find_with and checks.discovery:
                discovery_maps.append(attr.maps)
            for j, s in enumerate(batch):
                i = start + j
                m = attr.maps[j]
                rows.append({
                    "id": s.id, "label": int(s.label), "pred": int(preds[i]), "method": method,
                    "outside_mass": scores.outside_mass(m, s.region),
                    "tell_mass": scores.tell_mass(m, s.tell),
                    "tell_hit": scores.tell_hit(m, s.tell),
                })  # fmt: skip
                if i in gallery:
                    kept[i] = m
            bar.update(len(batch))
        bar.close()
        timings[method] = time.perf_counter() - t0
        gallery_maps[method] = (
            np.stack([kept[i] for i in gallery]) if gallery else np.zeros((0, 1, 1), np.float32)
        )
    per_sample = pd.DataFrame(rows, columns=["id", "label", "pred", "method", *SCORE_COLUMNS])
    behaviour: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    if checks.behaviour and any(s.tell is not None for s in data):
        behaviour["removal"] = removal_test(model, data.samples)
        known = colours if colours is not None else tell_colours(data.samples)
        behaviour["swap"] = swap_test(model, data.samples, known)
    timings["behaviour"] = time.perf_counter() - t0

    suspects: list[Suspect] = []
    if discovery_maps:
        t0 = time.perf_counter()
        suspects = check_suspects(
            model, data, all_images, np.concatenate(discovery_maps), preds, checks.seed
        )
        timings["discovery"] = time.perf_counter() - t0
    sanity: dict[str, SanityResult] = {}
    if checks.sanity and len(data):
        t0 = time.perf_counter()
        sanity = sanity_checks(model, data, methods, checks)
        timings["sanity"] = time.perf_counter() - t0
    ablation: dict[str, Any] = {}
    if checks.ablation and any(s.region.any() for s in data):
        t0 = time.perf_counter()
        ablation = {k: v for k, v in region_ablation(model, data).items() if np.isscalar(v)}
        timings["ablation"] = time.perf_counter() - t0

    tells = [s.tell for s in data if s.tell is not None and s.tell.any()]
    tell_area = float(np.mean([t.mean() for t in tells])) if tells else float("nan")
    untrusted = {m for m, r in sanity.items() if not r.passed}
    conditions = build_conditions(
        behaviour, summarise(per_sample), tell_area, thresholds, untrusted=untrusted
    )
    conditions += suspect_conditions(suspects, thresholds)
    if ablation:
        conditions.append(
            Condition("object removed", "ablation_retained", "behaviour",
                      ablation.get("retained", np.nan), *thresholds.ablation_retained)
        )  # fmt: skip
    eval_acc = float((preds == labels).mean()) if len(data) else float("nan")
    return ModelAudit(
        name=name,
        accuracy=accuracy,
        eval_accuracy=eval_acc,
        per_sample=per_sample,
        behaviour=behaviour,
        conditions=conditions,
        verdict=verdict(conditions),
        method_params=params,
        gallery_maps=gallery_maps,
        seconds=timings,
        suspects=suspects,
        sanity=sanity,
        ablation=ablation,
    )


@dataclass
class Suspect:
    """A suspected tell found without annotations, and what the model did when it was tested."""

    found: SuspectedTell
    removal: dict[str, float]
    swap: dict[str, float]
    iou_with_known: float  # overlap with the annotated tell box, when one is known (else NaN)

    @property
    def evidence(self) -> float:
        """The stronger behavioural effect (accuracy drop on removal, swap follow rate), 0 when
        untested: strong suspects are ranked by what the model *does*, the picture only proposes
        them (two boxes on one tell can score alike; the one whose removal matters comes first)."""
        vals = [self.removal.get("accuracy_drop", np.nan), self.swap.get("follow_rate", np.nan)]
        vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
        return max(vals, default=0.0)


def check_suspects(
    model: nn.Module,
    data: Dataset,
    images: np.ndarray,
    maps: np.ndarray,
    preds: np.ndarray,
    seed: int,
    top: int = 3,
) -> list[Suspect]:
    """Discover suspected tells from attribution maps, test the top ``top`` behaviourally, and
    rank them: strong ones first, by behavioural evidence, then by discovery score.

    Discovery never sees the tell annotations; removal covers the suspected box on the affected
    classes' images, swap paints the other affected classes' colours into it."""
    regions = [s.region if s.region.any() else None for s in data]
    found = discover_tells(maps, images, data.labels(), preds, regions, seed=seed)
    out = []
    for sus in found.suspects[:top]:
        mask = suspected_tell_mask(sus, images.shape[1:3])
        affected = [s for s in data if s.label in sus.classes]
        removal = removal_test(model, affected, mask=mask)
        swap = swap_test(model, list(data), dict(sus.colours), box=sus.box) if sus.colours else {}
        known = [s.tell_box for s in data if s.tell_box is not None and s.label in sus.classes]
        iou = float(np.mean([box_iou(sus.box, b) for b in known])) if known else float("nan")
        out.append(Suspect(sus, removal, swap, iou))
    return rank_suspects(out)


def rank_suspects(suspects: list[Suspect]) -> list[Suspect]:
    """Strong suspects first, by behavioural evidence, then by discovery score (stable)."""
    return sorted(suspects, key=lambda s: (not s.found.strong, -s.evidence, -s.found.score))


def sanity_checks(
    model: nn.Module, data: Dataset, methods: dict[str, dict[str, Any]], checks: Checks
) -> dict[str, SanityResult]:
    """Cascading randomisation per method on a few images (LIME with fewer samples: cost)."""
    idx = np.random.default_rng(checks.seed).permutation(len(data))[: checks.sanity_images]
    images = np.stack([data[i].image for i in idx])
    targets = np.array([data[i].label for i in idx])
    out = {}
    for method, kwargs in methods.items():
        params = dict(kwargs)
        if method == "lime":
            params["n_samples"] = min(int(params.get("n_samples", 500)), 200)
        out[method] = randomisation_check(
            model, images, targets, explainer=method, seed=checks.seed, explainer_params=params
        )
    return out


@dataclass
class AuditResult:
    """What the report renders: one or more model audits on the same evaluation images."""

    title: str
    class_names: list[str]
    models: dict[str, ModelAudit]
    eval_data: Dataset
    gallery: list[int]
    seed: int
    config: dict[str, Any]
    thresholds: Thresholds
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    comparison: list[dict[str, Any]] = field(default_factory=list)  # paired differences

    @property
    def tell_area_fraction(self) -> float:
        tells = [s.tell.mean() for s in self.eval_data if s.tell is not None and s.tell.any()]
        return float(np.mean(tells)) if tells else float("nan")

    @property
    def outside_area_fraction(self) -> float:
        regions = [1 - s.region.mean() for s in self.eval_data if s.region.any()]
        return float(np.mean(regions)) if regions else float("nan")
