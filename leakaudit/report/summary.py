"""AuditResult → the machine-readable summary (``summary.json``; schema in
docs/summary-schema.md). Values only: the views (HTML, markdown, JUnit) are in ``render``."""

from __future__ import annotations

import json
from typing import Any

from leakaudit import __version__
from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.model_audit import per_class_table
from leakaudit.evidence import metrics
from leakaudit.jsonable import jsonable

# summary.json layout version: bump it when a key changes meaning or disappears (adding keys is
# compatible). 2 = first versioned layout (docs/summary-schema.md).
SUMMARY_SCHEMA_VERSION = 2


def _named(result: dict[str, Any], class_names: list[str]) -> dict[str, Any]:
    """A behaviour result with class indices (``per_class`` keys, ``worst_class``) as names."""
    out = dict(result)
    if isinstance(out.get("per_class"), dict):
        out["per_class"] = {class_names[int(k)]: v for k, v in out["per_class"].items()}
    if out.get("worst_class") is not None:
        out["worst_class"] = class_names[int(out["worst_class"])]
    return out


def to_summary(result: AuditResult) -> dict[str, Any]:
    """The machine-readable summary (schema documented in README, "summary.json")."""
    models = {}
    audited = metrics.audited()
    for name, audit in result.models.items():
        table = per_class_table(audit.per_sample, result.class_names)
        methods = {}
        for method, means in audit.method_means().items():
            rows = table[(table["method"] == method) & (table["class"] != "all")]
            methods[method] = {
                **means,
                "params": audit.method_params.get(method, {}),
                "per_class": {
                    r["class"]: {
                        **{m.key: r[m.name] for m in audited if m.name in r},
                        "n": int(r["n"]),
                    }
                    for _, r in rows.iterrows()
                },
            }
        models[name] = {
            "suspected_tells": [
                {
                    "box": list(x.found.box),
                    "colour": list(x.found.colour),
                    "classes": [result.class_names[k] for k in x.found.classes],
                    "share": x.found.share,
                    "score": x.found.score,
                    "strong": x.found.strong,
                    "may_fail": x.may_fail,
                    "judged": x.judged,
                    "source": x.found.source,
                    "removal": _named(x.removal, result.class_names),
                    "swap": x.swap,
                    "iou_with_known_tell": x.iou_with_known,
                }
                for x in audit.suspects
            ],
            "sanity": {
                m: {
                    "passed": r.passed,
                    "final_spearman": r.final_spearman,
                    "reason": r.reason,
                    "layers": [
                        {"layer": st.layer, "spearman": st.spearman, "ssim": st.ssim}
                        for st in r.steps
                    ],
                }
                for m, r in audit.sanity.items()
            },
            "region_ablation": audit.ablation,
            **({"insight_witness": audit.insight} if audit.insight else {}),
            "verdict": audit.verdict,
            "accuracy": audit.accuracy,
            "eval_accuracy": audit.eval_accuracy,
            "methods": methods,
            "behaviour": {k: _named(v, result.class_names) for k, v in audit.behaviour.items()},
            "conditions": [
                {
                    "name": c.label,
                    "kind": c.kind,
                    "evidence": c.evidence,
                    "value": c.value,
                    "warn": c.warn,
                    "fail": c.fail,
                    "status": c.status,
                }
                for c in audit.conditions
            ],
        }
    return jsonable(
        {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "leakaudit_version": __version__,
            "title": result.title,
            "seed": result.seed,
            "class_names": result.class_names,
            "n_eval": len(result.eval_data),
            "tell_area_fraction": result.tell_area_fraction,
            "outside_area_fraction": result.outside_area_fraction,
            "models": models,
            "comparison": result.comparison,
            "thresholds": result.thresholds.as_dict(),
            "config": result.config,
            "data_problems": [
                {"item": p.item, "problem": p.problem, "action": p.action}
                for p in result.eval_data.problems
            ],
        }
    )


def summary_text(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"
