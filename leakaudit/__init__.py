"""leakaudit: audit image classifiers for data leakage.

The public Python API (the command line ends in the same builder, ``pipeline.build_result``)::

    import leakaudit
    result = leakaudit.audit(model, (images, labels), methods=["saliency"], masks=masks, limit=200)
    leakaudit.write_report(result, "out/audit")  # or out="out/audit" above

Heavy imports (torch, captum, scikit-image) happen on first use, so ``import leakaudit`` and
``leakaudit --help`` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "audit": ("leakaudit.api", "audit"),
    "compare": ("leakaudit.api", "compare"),
    "as_dataset": ("leakaudit.api", "as_dataset"),
    "write_report": ("leakaudit.api", "write"),
    "read_dataset": ("leakaudit.data.formats", "read_dataset"),
    "load_model": ("leakaudit.models.load", "load_model"),
    "inject": ("leakaudit.data.inject", "inject_dataset"),
    "TellSpec": ("leakaudit.data.tells", "TellSpec"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'leakaudit' has no attribute {name!r}")
    import importlib

    module, attr = _API[name]
    return getattr(importlib.import_module(module), attr)
