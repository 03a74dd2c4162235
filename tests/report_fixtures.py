"""Known-answer audit results for the report tests, built directly (no model, no explainer).

Every value the report shows is set here, so tests can say exactly which images a gallery must
show, which conditions fail and what the summary must contain. Class names, ids, model names and
data problems carry hostile strings (markup, table pipes, backticks, ampersands, newlines).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from leakaudit.auditing.audit_result import AuditResult
from leakaudit.auditing.model_audit import ModelAudit, score_columns
from leakaudit.auditing.verdict import Condition, Thresholds, verdict
from leakaudit.data.samples import DataProblem, Dataset, Sample
from leakaudit.evidence.discovery import SuspectedTell
from leakaudit.evidence.sanity import LayerStep, SanityResult

EVIL = "<script>alert(1)</script>"
CLASSES = [EVIL, "sq|uare", "tri&angle", "cr`oss`\nnew"]
HOSTILE_MODEL = "po|is`on<b>ed"
METHODS = ("saliency", "lime")
N = 16
SIDE = 32


def _samples(n: int, side: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.random((side, side, 3), dtype=np.float32) * 0.5
        region = np.zeros((side, side), bool)
        region[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = True
        tell = np.zeros((side, side), bool)
        tell[1:6, 1:6] = True
        img[tell] = (1.0, 0.2, 0.1)
        sid = 'img"<b>evil</b>|`x`.png' if i == 0 else f"img-{i:05d}"
        out.append(Sample(img, i % 4, region, sid, tell, (1, 1, 6, 6)))
    return out


def _model(name: str, k: int, data: Dataset, conditions: list[Condition]) -> ModelAudit:
    """Scores chosen so the galleries have one right answer: tell_mass rises with the index
    (offenders = the last images), images 3, 7, 11 are wrong with confidence 0.6, 0.9, 0.7."""
    n = len(data)
    rows = []
    wrong = {3: 0.6, 7: 0.9, 11: 0.7}
    for method in METHODS:
        for i, s in enumerate(data):
            pred = (s.label + 1) % 4 if i in wrong else s.label
            rows.append(
                {
                    "id": s.id,
                    "label": s.label,
                    "pred": pred,
                    "method": method,
                    "outside_mass": 0.5 + 0.02 * i,
                    "tell_mass": 0.01 * (i + 1) * (k + 1),
                    "tell_hit": float(i % 2),
                    "confidence": wrong.get(i, 0.95 - 0.01 * i),
                    "p_true": 0.1 if i in wrong else 0.9,
                }
            )
    per_sample = pd.DataFrame(
        rows, columns=["id", "label", "pred", "method", *score_columns(), "confidence", "p_true"]
    )
    rng = np.random.default_rng(k)
    maps = {m: rng.random((n, SIDE, SIDE)).astype(np.float32) for m in METHODS}
    steps = [LayerStep(f"block{j}", 0.9 - 0.3 * j, 0.5) for j in range(4)]
    suspect = SuspectedTell((1, 1, 6, 6), (1.0, 0.2, 0.1), [0, 1], 0.9, 0.8, [0])
    from leakaudit.evidence.suspects import Suspect

    audit = ModelAudit(
        name=name,
        accuracy=0.9,
        eval_accuracy=float(np.mean([i not in wrong for i in range(n)])),
        per_sample=per_sample,
        behaviour={
            "removal": {
                "n": n,
                "accuracy_with_tell": 0.8,
                "accuracy_tell_removed": 0.3,
                "accuracy_drop": 0.5,
                "flip_rate": 0.5,
            },
            "swap": {"n_pairs": n, "follow_rate": 0.6, "kept_true_class_rate": 0.3},
        },
        conditions=conditions,
        verdict=verdict(conditions),
        method_params={m: {"method": m, "reduction": "sum"} for m in METHODS},
        gallery_maps={m: maps[m][[0, 1]] for m in METHODS},
        suspects=[Suspect(suspect, {"accuracy_drop": 0.4}, {"follow_rate": 0.7}, 1.0)],
        sanity={m: SanityResult(m, steps, 0.5, True, "ok", 4) for m in METHODS},
    )
    audit.compact_maps = {m: v.astype(np.float16) for m, v in maps.items()}
    return audit


def _conditions(fail: bool) -> list[Condition]:
    conds = [
        Condition(
            "tell removal", "removal_accuracy_drop", "behaviour", 0.5 if fail else 0.01, 0.1, 0.2
        ),
        Condition("tell swap", "swap_follow_rate", "behaviour", 0.3, 0.25, 0.5),  # WARN
        Condition(
            "saliency: top on tell", "tell_top_rate", "attribution", float("nan"), 0.25, 0.5
        ),  # N/A
        Condition(
            f"lime: {EVIL} | `mass`",
            "tell_mass_excess",
            "attribution",
            0.9 if fail else 0.0,
            0.15,
            0.3,
        ),
    ]
    return conds


@functools.cache
def two_model_result() -> AuditResult:
    """A compare-like result: a clean model and a leaking one with a hostile name."""
    data = Dataset(_samples(N, SIDE, 0), list(CLASSES))
    data.problems.append(DataProblem("bad<file>|.jpg", "truncated <JPEG> `x`", "skipped"))
    models = {
        "clean": _model("clean", 0, data, _conditions(False)),
        HOSTILE_MODEL: _model(HOSTILE_MODEL, 1, data, _conditions(True)),
    }
    from leakaudit.auditing.pipeline import compare_audits

    result = AuditResult(
        f"leakaudit compare: clean vs {HOSTILE_MODEL}",
        list(CLASSES),
        models,
        data,
        [0, 1],
        0,
        {"x": EVIL, "data": "d&<ata>"},
        Thresholds(),
        notes=[f"note {EVIL}"],
    )
    result.comparison = compare_audits(models["clean"], models[HOSTILE_MODEL], 0)
    return result


def big_result(n: int, side: int = 64) -> AuditResult:
    """One model on ``n`` images: for the report-size bound."""
    data = Dataset(_samples(n, side, 1), ["a", "b", "c", "d"])
    conds = _conditions(True)
    audit = _model("model", 0, data, conds)
    rng = np.random.default_rng(5)
    audit.compact_maps = {m: rng.random((n, 64, 64)).astype(np.float16) for m in METHODS}
    return AuditResult(
        "big", ["a", "b", "c", "d"], {"model": audit}, data, [0, 1], 0, {}, Thresholds()
    )
