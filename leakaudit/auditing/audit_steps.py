"""The audit's on/off switches: which evidence beyond the attribution scores it gathers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AuditSteps:
    """Which evidence beyond the attribution scores an audit gathers (all on by default)."""

    behaviour: bool = True  # tell removal / swap where tells are known
    discovery: bool = True  # suspected tells without annotations, then tested by behaviour
    sanity: bool = True  # model-parameter randomisation per method
    ablation: bool = True  # remove the object, keep the background
    discovery_method: str = "saliency"
    sanity_images: int = 12
    # costly methods (LIME, occlusion, IG, SmoothGrad) are checked on at most this many of the
    # sanity images when a time budget is set (None: all ``sanity_images``)
    sanity_images_costly: int = 4
    seed: int = 0
