"""Attribution methods behind one contract: ``Explainer(model).attribute(images, targets)``."""

from leakaudit.explain.base import Attribution, Explainer
from leakaudit.explain.registry import EXPLAINERS, make_explainer

__all__ = ["EXPLAINERS", "Attribution", "Explainer", "make_explainer"]
