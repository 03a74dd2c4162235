"""What a report renders: one or more model audits on the same evaluation images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from leakaudit.auditing.verdict import Thresholds
from leakaudit.data.samples import Dataset

if TYPE_CHECKING:
    from leakaudit.auditing.model_audit import ModelAudit


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
