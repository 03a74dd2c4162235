"""The real-size benchmark (``leakaudit bench --arch resnet18 --size 224``): a bundled
architecture at full input size, timed per method, with our LIME's samples-vs-fidelity curve
against the lime package (docs/scale.md). The small side-by-side bench is ``bench.py``."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch
from torch import nn

from leakaudit.data.synthetic import make_shapes
from leakaudit.experiments.bench import (
    N_SEGMENTS,
    _timed,
    lime_package_weights,
    spearman_mean,
)
from leakaudit.explain.lime import Lime, segment
from leakaudit.explain.saliency import Saliency
from leakaudit.models.predict import predict_proba, to_tensor
from leakaudit.models.train import train_classifier
from leakaudit.paths import write_atomic
from leakaudit.runtime import amp_dtype, autocast, configure, model_device

SCALE_CURVE = (96, 128, 200, 400)  # our LIME sample counts on the samples-vs-fidelity curve


def cpu_bf16_native() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX); elsewhere a CPU
    emulates it and ``--amp`` is slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def train_scale_model(arch: str, size: int, seed: int, quick: bool) -> nn.Module:
    """A bundled real-size architecture trained briefly on synthetic shapes: realistic
    activations without pretrained weights. Convolutional nets train at 64 px (global pooling
    makes them size-agnostic) and are measured at ``size``; a ViT trains at ``size``."""
    from leakaudit.models.zoo import build

    train_size = size if arch == "vit_tiny" else 64
    kwargs = {"image_size": size} if arch == "vit_tiny" else {}
    model = build(arch, 4, seed=seed, **kwargs)
    ds = make_shapes(120 if quick else 400, seed=seed, size=train_size, n_classes=4)
    res = train_classifier(model, ds.images(), ds.labels(), seed=seed, epochs=1 if quick else 3,
                           batch_size=32, progress=False)  # fmt: skip
    return res.model.eval()


def run_scale_bench(
    arch: str = "resnet18",
    size: int = 224,
    n_images: int = 3,
    seed: int = 0,
    quick: bool = False,
    out_json: str | os.PathLike[str] | None = None,
    pkg_samples: int = 1000,
    ref_samples: int = 4000,
) -> dict[str, Any]:
    """The real-size case: ``arch`` at ``size`` px, one process, same images and segments.

    Throughput: raw forward, raw forward+backward, our saliency (batch 64). LIME: ours with the
    orthogonal design fitted without the kernel (``kernel_width=None``) at ``SCALE_CURVE``
    samples and lime's i.i.d. design at ``pkg_samples``, the ``lime`` package at ``pkg_samples``
    with ``batch_size`` 10 (its default) and 100. All LIMEs use the segment-mean baseline
    (lime's ``hide_color=None``) and SLIC at full resolution, and are judged by mean per-image
    Spearman against the ``lime`` package at ``ref_samples`` — the same baseline, so the
    reference explains the same thing.

    Mixed precision (``--amp``: bfloat16 autocast on a CPU, float16 on a GPU) is measured
    beside full precision: our LIME at every curve point with it, and the package's default run
    with its classifier function in the same autocast, so that both ratios are there — ours
    with ``--amp`` against the package as it runs by default, and at equal arithmetic. On a CPU
    without native bfloat16 (no AVX512-BF16/AMX) autocast is emulated and slower, and the table
    shows that too (``settings.cpu_bf16``).

    Rates are per second of this process's CPU time (``time.process_time``), not wall time: on
    a machine shared with other jobs the wall clock measures the neighbours, CPU time the work
    (run with ``LEAKAUDIT_THREADS=1`` for a single-core figure)."""
    configure()
    t_start = time.perf_counter()
    batch = 64
    curve = SCALE_CURVE[:2] if quick else SCALE_CURVE
    if quick:
        pkg_samples, ref_samples = min(pkg_samples, 200), min(ref_samples, 800)
    model = train_scale_model(arch, size, seed, quick)
    ds = make_shapes(n_images, seed=seed + 1, size=size, n_classes=4)
    images = ds.images()
    targets = predict_proba(model, images).argmax(1)
    t0 = time.perf_counter()
    segments = np.stack([segment(im, N_SEGMENTS) for im in images])
    slic_s = (time.perf_counter() - t0) / n_images

    n_fwd = batch if quick else 2 * batch
    reps = -(-n_fwd // n_images)
    big = np.tile(images, (reps, 1, 1, 1))[:n_fwd]
    big_t = np.tile(targets, reps)[:n_fwd]
    x = to_tensor(big)
    tt = torch.from_numpy(big_t.astype(np.int64))

    def rate(backward: bool, amp: bool = False) -> float:
        def run() -> None:
            for s in range(0, n_fwd, batch):
                if backward:
                    xb = x[s : s + batch].clone().requires_grad_(True)
                    model(xb).gather(1, tt[s : s + batch, None]).sum().backward()
                else:
                    with torch.inference_mode(), autocast(model_device(model), amp):
                        model(x[s : s + batch])

        run()
        return n_fwd / _cpu_timed(run)[1]

    fwd, fwd_bwd, fwd_amp = rate(False), rate(True), rate(False, amp=True)
    sal = Saliency(model, batch_size=batch)
    sal.attribute(big[:batch], big_t[:batch])
    sal_rate = n_fwd / _cpu_timed(lambda: sal.attribute(big, big_t))[1]

    amp_name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype(model_device(model))]
    amp_name += " autocast"

    def ours(n: int, sampling: str, width: float | None = 0.25, amp: bool = False):
        lime = Lime(model, n_samples=n, baseline="mean", seed=seed, sampling=sampling,
                    kernel_width=width, amp=amp)  # fmt: skip
        att, dt = _cpu_timed(lambda: lime.attribute(images, targets, segments))
        return att.extras["weights"], n_images / dt

    def row(name: str, n: int, w: np.ndarray, rate: float, amp: bool) -> dict[str, Any]:
        return {"name": name, "samples": n, "img_s": rate, "amp": amp,
                "spearman_vs_ref": spearman_mean(w, w_ref)}  # fmt: skip

    ours(curve[0], "orthogonal", None)  # warm-up
    ours(curve[0], "orthogonal", None, amp=True)
    w_ref, _ = _timed(
        lambda: lime_package_weights(model, images, targets, segments, ref_samples, seed + 300, 100)
    )
    runs: list[dict[str, Any]] = []
    for amp in (False, True):
        for n in curve:
            w, r = ours(n, "orthogonal", None, amp=amp)
            tag = f", {amp_name}" if amp else ""
            runs.append(row(f"LIME ours, {n} orthogonal, unweighted{tag}", n, w, r, amp))
    w, r = ours(pkg_samples, "bernoulli")
    runs.append(row(f"LIME ours, {pkg_samples} bernoulli", pkg_samples, w, r, False))
    for bs, amp in ((10, False), (100, False), (10, True)):
        w, dt = _cpu_timed(
            lambda bs=bs, amp=amp: lime_package_weights(
                model, images, targets, segments, pkg_samples, seed + 100, bs, amp=amp
            )
        )
        tag = f", classifier in {amp_name}" if amp else ""
        runs.append(row(f"lime package, {pkg_samples}, batch_size {bs}{tag}", pkg_samples, w,
                        n_images / dt, amp))  # fmt: skip
    pkg = {r["name"]: r for r in runs if r["name"].startswith("lime package")}
    pkg10 = pkg[f"lime package, {pkg_samples}, batch_size 10"]
    pkg100 = pkg[f"lime package, {pkg_samples}, batch_size 100"]
    pkg10_amp = pkg[f"lime package, {pkg_samples}, batch_size 10, classifier in {amp_name}"]
    for r in runs:
        r["x_lime_pkg_bs10"] = r["img_s"] / pkg10["img_s"]
        r["x_lime_pkg_bs100"] = r["img_s"] / pkg100["img_s"]
        r["x_lime_pkg_bs10_same_precision"] = (
            r["img_s"] / (pkg10_amp if r["amp"] else pkg10)["img_s"]
        )

    def fastest(amp: bool) -> dict[str, Any] | None:
        """Our fastest LIME at the package's default fidelity, in one precision."""
        fit = [r for r in runs if r["name"].startswith("LIME ours") and r["amp"] == amp
               and r["spearman_vs_ref"] >= pkg10["spearman_vs_ref"]]  # fmt: skip
        best = max(fit, key=lambda r: r["img_s"]) if fit else None
        return best and {
            k: best[k]
            for k in (
                "name",
                "spearman_vs_ref",
                "x_lime_pkg_bs10",
                "x_lime_pkg_bs100",
                "x_lime_pkg_bs10_same_precision",
            )
        }

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "settings": {"arch": arch, "size": size, "n_images": n_images, "seed": seed,
                     "quick": quick, "n_segments": N_SEGMENTS, "batch": batch,
                     "pkg_samples": pkg_samples, "ref_samples": ref_samples,
                     "amp": amp_name, "cpu_bf16": cpu_bf16_native(),
                     "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                     "reference": f"lime package, {ref_samples} samples, segment-mean baseline"},
        "throughput": {"raw_forward_img_s": fwd, "raw_forward_backward_img_s": fwd_bwd,
                       "raw_forward_amp_img_s": fwd_amp,
                       "saliency_img_s": sal_rate,
                       "saliency_x_forward_backward": sal_rate / fwd_bwd,
                       "slic_s_per_image": slic_s},
        "lime": runs,
        "fastest_ours_at_lime_fidelity": fastest(False),
        "fastest_ours_at_lime_fidelity_amp": fastest(True),
        "total_s": time.perf_counter() - t_start,
    }  # fmt: skip
    _print_scale(result)
    if out_json is not None:
        write_atomic(out_json, json.dumps(result, indent=2))  # never through a link
    return result


def _cpu_timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, CPU seconds of this process)."""
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def _print_scale(r: dict[str, Any]) -> None:
    print(f"\nleakaudit bench (scale) — {r['date']} — {r['machine']}; rates per CPU-second")
    print(f"settings: {r['settings']}\n")
    for k, v in r["throughput"].items():
        print(f"  {k:<34}{v:>10.3f}")
    head = (f"\n{'LIME':<62}{'img/s':>9}{'× pkg bs10':>12}{'× pkg bs100':>13}"
            f"{'× pkg, same precision':>23}{'Spearman':>10}")  # fmt: skip
    print(head + "\n" + "-" * (len(head) - 1))
    for x in r["lime"]:
        print(f"{x['name']:<62}{x['img_s']:>9.3f}{x['x_lime_pkg_bs10']:>12.2f}"
              f"{x['x_lime_pkg_bs100']:>13.2f}{x['x_lime_pkg_bs10_same_precision']:>23.2f}"
              f"{x['spearman_vs_ref']:>10.3f}")  # fmt: skip
    for key, what in (("", "full precision"), ("_amp", r["settings"]["amp"])):
        print(f"\nfastest of ours at ≥ the lime package's fidelity, {what}: "
              f"{r['fastest_ours_at_lime_fidelity' + key]}")  # fmt: skip
    print(f"total {r['total_s']:.0f} s")
