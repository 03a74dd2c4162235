"""What a power run reads off one audit: the conditions, whether discovery found the planted
tell, how much of it the top suspect covers, the classes the tell tests say the model relied on,
and the blind (annotation-free) verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from leakaudit.auditing.conditions import CONDITIONS
from leakaudit.auditing.model_audit import ModelAudit
from leakaudit.data.samples import Dataset
from leakaudit.evidence.discovery import (
    SuspectedTell,
    box_iou,
    discover_tells,
    suspect_boxes,
    suspected_tell_mask,
)
from leakaudit.experiments.power_result import COVER_SHARE, DISCOVERY_IOU


def _conditions(audit: ModelAudit) -> list[dict[str, Any]]:
    """Name (without the reason it was set aside, which its ``status`` N/A reflects), kind,
    value and status of each condition."""
    return [
        {
            "name": c.name,
            "kind": c.kind,
            "value": float(c.value),
            "status": c.status,
            "fail": float(c.fail),
        }
        for c in audit.conditions
    ]


def _discovery(audit: ModelAudit, data: Dataset, method: str, true_box, seed: int) -> dict:
    """Run annotation-free discovery on one method's maps; is the top suspect the true tell?"""
    if method not in audit.gallery_maps or not len(data):
        return {"hit": None, "iou": None, "top_strong": None, "n_strong": None}
    preds = audit.per_sample.loc[audit.per_sample["method"] == method, "pred"].to_numpy()
    res = discover_tells(
        audit.gallery_maps[method],
        data.images(),
        data.labels(),
        predictions=preds,
        regions=[s.region if s.region.any() else None for s in data],
        seed=seed,
    )
    if not res.suspects:
        return {"hit": False, "iou": 0.0, "top_strong": False, "n_strong": 0}
    top = res.suspects[0]
    iou = box_iou(top.box, true_box)
    return {
        "hit": bool(iou >= DISCOVERY_IOU),
        "iou": float(iou),
        "top_strong": bool(top.strong),
        "top_box": [int(v) for v in top.box],
        "n_strong": len(res.strong),
    }


def suspect_coverage(
    suspect: SuspectedTell | Sequence[SuspectedTell] | None,
    data: Dataset,
    classes: Sequence[int] | None = None,
) -> float:
    """Share of ``data``'s tell-bearing images whose tell the suspect's box *in that image*
    covers by ≥ ``COVER_SHARE`` of its pixels (no IoU: a box around a logo or text is fine).
    Several suspects: an image counts when any of their boxes covers its tell. ``classes``:
    count only the tell-bearing images of these classes (NaN when there are none)."""
    tells = [(i, s.tell) for i, s in enumerate(data) if s.tell is not None and s.tell.any()
             and (classes is None or s.label in classes)]  # fmt: skip
    if not tells:
        return float("nan")
    if suspect is None:
        suspects = []
    elif isinstance(suspect, SuspectedTell):
        suspects = [suspect]
    else:
        suspects = list(suspect)
    per_suspect = [suspect_boxes(s, len(data)) for s in suspects]
    hits = []
    for i, t in tells:
        hits.append(any(
            boxes[i] is not None
            and t[suspected_tell_mask(boxes[i], t.shape)].sum() >= COVER_SHARE * t.sum()
            for boxes in per_suspect
        ))  # fmt: skip
    return float(np.mean(hits))


def relied_classes(audit: ModelAudit) -> list[int]:
    """Classes whose own tell the model relies on, by the annotated removal test: covering the
    tell breaks at least ``removal_class_drop``'s warn line (10 points) of the class's
    tell-bearing images, at the 95 % lower bound. A tell the model ignores leaves no trace in
    its attributions, so no attribution-based discovery can find it, nor should it."""
    per = (audit.behaviour.get("removal") or {}).get("per_class") or {}
    line = CONDITIONS["removal_class_drop"].warn
    return sorted(int(k) for k, v in per.items() if v.get("drop_lower", 0.0) >= line)


def _blind(audit: ModelAudit, data: Dataset) -> dict[str, Any]:
    """What the audit says from discovery alone: the suspected-tell conditions (which never see
    the annotations) and how well its top suspect covers the real tells."""
    conds = [c for c in audit.conditions if c.name.startswith("suspected")]
    top = audit.suspects[0].found if audit.suspects else None
    strong = [x.found for x in audit.suspects if x.found.strong]
    judged = next((x.found for x in audit.suspects if x.judged), None)
    relied = relied_classes(audit)
    return {
        "leak": any(c.status == "FAIL" for c in conds),
        "coverage": suspect_coverage(top, data),
        # every strong suspect together (each is tested by behaviour): a tell whose classes
        # discovery split over two suspects is still found
        "coverage_strong": suspect_coverage(strong, data),
        # the same counted over the tells of the classes that rely on them (set 2026-11-26,
        # before the runs it was first reported on; docs/validity.md, fourth round)
        "relied_classes": relied,
        "coverage_relied": suspect_coverage(top, data, relied),
        "coverage_relied_strong": suspect_coverage(strong, data, relied),
        # the same by the *judged* suspect, the one whose tests are the suspect rows (set
        # 2026-12-05 after the ninth round's first results; docs/validity.md, ninth round)
        "coverage_relied_judged": suspect_coverage(judged, data, relied),
        "top_source": top.source if top is not None else None,
        "top_strong": bool(top.strong) if top is not None else False,
    }
