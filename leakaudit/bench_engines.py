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
from pathlib import Path
from typing import Any

import numpy as np

from leakaudit.data.synthetic import make_shapes
from leakaudit.engines import EngineOptions, check_engine
from leakaudit.model_audit import Checks, audit_model
from leakaudit.runtime import configure
from leakaudit.verdict import Thresholds

ONLY_ATTRIBUTIONS = Checks(behaviour=False, discovery=False, sanity=False, ablation=False)


def run_engine_bench(
    engines: list[str],
    arch: str = "small_cnn",
    size: int = 64,
    n_images: int = 16,
    methods: tuple[str, ...] = ("saliency", "gradcam", "lime"),
    lime_samples: int = 500,
    workers: int | None = None,
    seed: int = 0,
    out_json: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Explain ``n_images`` synthetic ``size`` px images with ``methods`` on each engine; print
    and return images/s (wall), per-image seconds per method, and the largest score difference
    from the first engine."""
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
    for name in engines:
        start_s = 0.0
        if name == "ray":
            from leakaudit.engines.ray_engine import connect

            t0 = time.perf_counter()
            ray = connect(None)
            start_s = time.perf_counter() - t0
            workers = workers or int(ray.cluster_resources().get("CPU", 1))
        a = audit_model(model, arch, data, kwargs, accuracy=float("nan"), thresholds=Thresholds(),
                        progress=False, checks=ONLY_ATTRIBUTIONS, batch_size=batch,
                        engine=EngineOptions(name, workers=workers))  # fmt: skip
        scores = a.per_sample[["outside_mass", "tell_mass"]].to_numpy(dtype=float)
        first = scores if first is None else first
        diff = float(np.nanmax(np.abs(scores - first), initial=0.0))
        wall = a.seconds["engine"]
        rows.append({
            "engine": name, "workers": workers if name == "ray" else 1,
            "wall_s": wall, "images_per_s": n_images * len(a.method_params) / wall,
            "cluster_start_s": start_s, "max_score_diff": diff,
            "per_image_s": {m: a.seconds[m] / n_images for m in a.method_params},
        })  # fmt: skip
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, "
        f"{os.cpu_count()} CPUs", "arch": arch, "size": size, "images": n_images,
        "methods": list(methods), "lime_samples": lime_samples, "engines": rows,
    }  # fmt: skip
    _print(result)
    if out_json:
        Path(out_json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def _print(r: dict[str, Any]) -> None:
    print(f"\nleakaudit bench --engines — {r['date']} — {r['machine']}")
    print(f"{r['arch']} at {r['size']} px, {r['images']} images × {', '.join(r['methods'])} "
          f"(LIME {r['lime_samples']} samples)\n")  # fmt: skip
    print(f"{'engine':<8}{'workers':>8}{'wall s':>9}{'img/s':>8}{'start s':>9}{'max diff':>10}"
          "   per image (worker s)")  # fmt: skip
    for e in r["engines"]:
        per = ", ".join(f"{m} {s:.3f}" for m, s in e["per_image_s"].items())
        print(f"{e['engine']:<8}{e['workers']:>8}{e['wall_s']:>9.1f}{e['images_per_s']:>8.2f}"
              f"{e['cluster_start_s']:>9.1f}{e['max_score_diff']:>10.1e}   {per}")  # fmt: skip
