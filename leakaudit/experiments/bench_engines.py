"""`leakaudit bench --engines local,ray`: the same audit batches on each engine, timed.

The point on one small machine is correctness and the path to a cluster, not speed: the Ray
run must give the local numbers (checked here too, to 1e-6), and its per-image worker costs
are what sizes a cluster (docs/scale.md). Wall times include the engine's overhead (for Ray:
starting the actors and loading the model in each); the cluster start is timed apart.
"""

from __future__ import annotations

import json
import os
import platform
import time
from typing import Any

import numpy as np
import pandas as pd

from leakaudit.auditing.model_audit import _compact_shape
from leakaudit.auditing.predict_step import predict_all
from leakaudit.data.synthetic import make_shapes
from leakaudit.engines import EngineOptions, Job, check_engine, explain
from leakaudit.explain import make_explainer
from leakaudit.explain.lime import LIME_SAMPLES
from leakaudit.paths import write_atomic
from leakaudit.runtime import configure


def run_engine_bench(
    engines: list[str],
    arch: str = "small_cnn",
    size: int = 64,
    n_images: int = 16,
    methods: tuple[str, ...] = ("saliency", "gradcam", "lime"),
    lime_samples: int = LIME_SAMPLES,
    workers: int | None = None,
    seed: int = 0,
    out_json: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Explain ``n_images`` synthetic ``size`` px images with ``methods`` on each engine; print
    and return images/s (wall, explanations of all methods), per-image core-seconds per method
    (CPU time: on a shared machine the wall clock measures the neighbours) and the largest
    score difference from the first engine."""
    from leakaudit.models.zoo import build

    configure()
    for name in engines:
        check_engine(name)
    model = build(arch, 4, seed=seed).eval()
    data = make_shapes(n_images, seed=seed + 1, size=size, n_classes=4)
    kwargs = {
        m: ({"n_samples": lime_samples, "seed": seed} if m == "lime" else {}) for m in methods
    }
    rows, first = [], None
    batch = max(1, min(8, n_images // 4))  # a few batches per worker even for few images
    probs = predict_all(model, data)
    labels = data.labels()
    job = Job(arch, "", labels, probs.argmax(1), probs.max(1), probs[np.arange(n_images), labels],
              frozenset(), batch, progress=False)  # fmt: skip
    explainers = {m: make_explainer(m, model, **kw) for m, kw in kwargs.items()}
    orders = {m: np.arange(n_images) for m in kwargs}
    for name in engines:
        start_s = 0.0
        if name == "ray":
            from leakaudit.engines.ray_engine import connect

            t0 = time.perf_counter()
            ray = connect(None)
            start_s = time.perf_counter() - t0
            workers = workers or int(ray.cluster_resources().get("CPU", 1))
        t0 = time.perf_counter()
        done = explain(EngineOptions(name, workers=workers), job, model, kwargs, explainers,
                       orders, data.samples, None, _compact_shape(data))  # fmt: skip
        wall = time.perf_counter() - t0
        per_sample = pd.DataFrame([r for m in kwargs for r in done[m].rows])
        scores = per_sample[["outside_mass", "tell_mass"]].to_numpy(dtype=float)
        first = scores if first is None else first
        diff = float(np.nanmax(np.abs(scores - first), initial=0.0))
        rows.append({
            "engine": name, "workers": workers if name == "ray" else 1, "wall_s": wall,
            "images_per_s": n_images * len(kwargs) / wall, "cluster_start_s": start_s,
            "max_score_diff": diff,
            "per_image_core_s": {m: done[m].cpu_seconds / n_images for m in kwargs},
            "per_image_wall_s": {m: done[m].seconds / n_images for m in kwargs},
        })  # fmt: skip
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, "
        f"{os.cpu_count()} CPUs", "arch": arch, "size": size, "images": n_images,
        "methods": list(methods), "lime_samples": lime_samples, "engines": rows,
    }  # fmt: skip
    _print(result)
    if out_json:
        write_atomic(out_json, json.dumps(result, indent=2))  # never through a link
    return result


def _print(r: dict[str, Any]) -> None:
    print(f"\nleakaudit bench --engines — {r['date']} — {r['machine']}")
    print(f"{r['arch']} at {r['size']} px, {r['images']} images × {', '.join(r['methods'])} "
          f"(LIME {r['lime_samples']} samples)\n")  # fmt: skip
    print(f"{'engine':<8}{'workers':>8}{'wall s':>9}{'img/s':>8}{'start s':>9}{'max diff':>10}"
          "   per image: core-seconds (CPU time of the process that explained it)")  # fmt: skip
    for e in r["engines"]:
        per = ", ".join(f"{m} {s:.3f}" for m, s in e["per_image_core_s"].items())
        print(f"{e['engine']:<8}{e['workers']:>8}{e['wall_s']:>9.1f}{e['images_per_s']:>8.2f}"
              f"{e['cluster_start_s']:>9.1f}{e['max_score_diff']:>10.1e}   {per}")  # fmt: skip
