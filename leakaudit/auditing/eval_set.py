"""The evaluation set: how ``--limit`` picks it (stratified, seeded) and the notes the report
adds about it (classes left out, tells that no audited sample carries, a model at chance)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leakaudit.data.records import TELLS_FILE
from leakaudit.data.samples import Dataset
from leakaudit.evidence.stats import wilson_lower

if TYPE_CHECKING:
    from leakaudit.auditing.audit_options import AuditOptions
    from leakaudit.auditing.model_audit import ModelAudit


def stratified_limit(data: Dataset, limit: int | None, seed: int) -> Dataset:
    """At most ``limit`` samples, about the same share from every class, chosen with ``seed``.

    Every class keeps at least one sample while ``limit`` ≥ the number of classes (a rounded
    share of a small class can be 0; the largest classes give the extra samples back). With
    fewer slots than classes, the classes that get none are listed by ``unrepresented``.
    """
    if not limit or limit >= len(data):
        return data
    rng = np.random.default_rng(seed)
    labels = data.labels()
    present = [k for k in range(len(data.class_names)) if (labels == k).any()]
    sizes = {k: int((labels == k).sum()) for k in present}
    quota = {k: round(limit * n / len(data)) for k, n in sizes.items()}
    if limit >= len(present):
        for k in present:
            quota[k] = max(1, quota[k])
    else:  # fewer slots than classes: the largest classes, one sample each
        chosen = sorted(present, key=lambda k: (-sizes[k], k))[:limit]
        quota = {k: int(k in chosen) for k in present}
    while sum(quota.values()) > limit:  # give back from the class with the most to spare
        k = max(present, key=lambda c: (quota[c] - (limit >= len(present)), sizes[c], -c))
        quota[k] -= 1
    keep: list[int] = []
    for k in present:
        idx = np.flatnonzero(labels == k)
        keep += [int(i) for i in rng.choice(idx, size=min(quota[k], len(idx)), replace=False)]
    return data.subset(sorted(keep))


def unrepresented(full: Dataset, limited: Dataset) -> list[str]:
    """Classes present in ``full`` but absent after ``stratified_limit``."""
    have = set(limited.labels().tolist())
    had = set(full.labels().tolist())
    return [full.class_names[k] for k in sorted(had - have)]


def limit_notes(full: Dataset, limited: Dataset) -> list[str]:
    missing = unrepresented(full, limited)
    if not missing:
        return []
    return [f"Warning: --limit {len(limited)} is smaller than the number of classes; not audited: "
            f"{', '.join(missing)}."]  # fmt: skip


def tell_notes(opts: AuditOptions, data: Dataset) -> list[str]:
    """Say when a tells.json is there but no audited sample carries a tell: the planted-tell
    control then tests nothing, which is easy to miss (e.g. tells planted per image, audit
    reading crops)."""
    if any(s.tell is not None and s.tell.any() for s in data):
        return []
    root = Path(opts.data) if opts.data else Path(".")
    found = (
        Path(opts.tells) if opts.tells else (root if root.is_dir() else root.parent) / TELLS_FILE
    )
    if not found.is_file():
        return ["No tell annotations (tells.json): the verdict rests on discovered suspects."]
    return [
        f"Warning: {found} exists but none of the {len(data)} audited samples carries a tell. "
        f"Was the copy made for another mode (this audit: --mode {opts.mode}; inject --mode must "
        "match), or did --limit/--max-per-class drop the poisoned samples?"
    ]


def accuracy_notes(who: str, audit: ModelAudit, data: Dataset) -> list[str]:
    """A loud warning when the model does no better than always answering its largest class:
    every other number in the audit then describes a model that is not being fed correctly."""
    n = len(data)
    if n == 0 or not np.isfinite(audit.eval_accuracy):
        return []
    chance = max(data.counts().values()) / n
    lower = wilson_lower(int(round(audit.eval_accuracy * n)), n)
    if lower > chance:
        return []
    notes = [
        f"Warning: {who} scores {audit.eval_accuracy:.3f} on the audited images, no better than "
        f"always answering the largest class ({chance:.3f}). Likely causes: wrong normalisation "
        "(--preprocess imagenet or --mean/--std), channel order (--channel-order), class order "
        "(--classes), crop options (--mode/--margin/--window) or input size (--size)."
    ]
    better = best_class_order(audit, data)
    if better is not None:
        order, acc = better
        notes.append(
            f"Warning: {who} would score {acc:.3f} if its outputs named the classes in the order "
            f"{','.join(order)} (--classes {','.join(order)}): its output order is probably not "
            f"the data's ({','.join(data.class_names)})."
        )
    return notes


MAX_ORDER_CLASSES = 6  # 720 orders at most: tried in well under a second


def best_class_order(audit: ModelAudit, data: Dataset) -> tuple[list[str], float] | None:
    """The class order under which the model's predictions score best, with that accuracy,
    when it is clearly better than chance (its Wilson lower bound above the largest class's
    share) and better than the order given; None otherwise or with more than 6 classes.

    A model whose outputs are in another order than ``--classes`` scores *below* chance in a
    way no other input mistake does; relabelling its predictions tells which order fits."""
    import itertools

    k, n = len(data.class_names), len(data)
    per_sample = getattr(audit, "per_sample", None)  # `insight` passes its accuracy alone
    if per_sample is None or not 2 <= k <= MAX_ORDER_CLASSES or len(per_sample) == 0:
        return None
    rows = per_sample.drop_duplicates("id")
    labels = rows["label"].to_numpy(np.int64)
    preds = rows["pred"].to_numpy(np.int64)
    valid = (preds >= 0) & (preds < k)
    if not valid.any():
        return None
    hits = np.zeros((k, k), np.int64)  # hits[j, i]: output j on an image of class i
    np.add.at(hits, (preds[valid], labels[valid]), 1)
    best, order = max(
        (sum(hits[j, p[j]] for j in range(k)), p) for p in itertools.permutations(range(k))
    )
    identity = sum(hits[j, j] for j in range(k))
    chance = max(data.counts().values()) / n
    if best <= identity or wilson_lower(int(best), len(rows)) <= chance:
        return None
    return [data.class_names[i] for i in order], best / len(rows)
