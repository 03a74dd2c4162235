"""Side-by-side speed, fidelity, memory and cache benchmark (``leakaudit bench``).

Everything runs in one process on one model (a SmallCNN trained briefly on ``make_shapes``),
on the same images, with the same SLIC segmentation and the same sample count for every LIME,
so the ratios compare implementations, not set-ups. Fidelity is the mean per-image Spearman
correlation of superpixel weights against the ``lime`` package at 4000 samples; lime's own
seed-to-seed agreement at 1000 samples is printed beside it as the noise floor. Our LIME runs
with the segment-mean baseline here because that is what ``lime`` (``hide_color=None``) does.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from leakaudit.data.synthetic import make_shapes
from leakaudit.explain.lime import Lime, segment
from leakaudit.explain.saliency import Saliency
from leakaudit.models.train import predict_proba, to_tensor, train_classifier
from leakaudit.models.zoo import SmallCNN
from leakaudit.runtime import configure

N_SEGMENTS = 50
FWD_BATCH = 256  # measured fastest on 2 cores: 512+ spills the caches and halves throughput


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def train_bench_model(seed: int, quick: bool) -> nn.Module:
    """A SmallCNN trained briefly: accuracy is not the point, realistic activations are."""
    ds = make_shapes(200 if quick else 800, seed=seed, n_classes=4)
    torch.manual_seed(seed)
    res = train_classifier(
        SmallCNN(4), ds.images(), ds.labels(), seed=seed, epochs=2 if quick else 6, progress=False
    )
    return res.model


@contextlib.contextmanager
def _quiet_lime() -> Iterator[None]:
    """lime 0.2.0.1 draws a tqdm bar per image with no switch; silence it for clean tables."""
    import lime.lime_image as li

    saved = li.tqdm
    li.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        li.tqdm = saved


def lime_package_weights(
    model: nn.Module,
    images: np.ndarray,
    targets: np.ndarray,
    segments: np.ndarray,
    n_samples: int,
    seed: int,
    batch_size: int = 10,
) -> np.ndarray:
    """Superpixel weights from ``lime.lime_image`` with our segments; (N, Kmax) NaN-padded.
    ``batch_size`` is lime's own (its default is 10)."""
    from lime.lime_image import LimeImageExplainer

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        return predict_proba(model, batch.astype(np.float32))

    k_max = int(segments.max()) + 1
    out = np.full((len(images), k_max), np.nan, dtype=np.float32)
    with _quiet_lime():
        for i, (img, t, seg) in enumerate(zip(images, targets, segments, strict=True)):
            expl = LimeImageExplainer(kernel_width=0.25, random_state=seed + i)
            e = expl.explain_instance(
                img.astype(np.float64),
                classifier_fn,
                labels=(int(t),),
                top_labels=None,
                hide_color=None,
                num_samples=n_samples,
                batch_size=batch_size,
                segmentation_fn=lambda _x, seg=seg: seg,
                random_seed=seed,
            )
            for f, w in e.local_exp[int(t)]:
                out[i, f] = w
    return out


def captum_lime_run(
    model: nn.Module, images: np.ndarray, targets: np.ndarray, segments: np.ndarray, n: int
) -> None:
    """captum ``Lime`` with our segments as feature mask, segment-mean baseline, defaults else."""
    from captum.attr import Lime as CaptumLime

    from leakaudit.explain.lime import baseline_image

    cl = CaptumLime(model)
    for img, t, seg in zip(images, targets, segments, strict=True):
        x = to_tensor(img[None])
        base = to_tensor(baseline_image(img, seg, "mean")[None])
        mask = torch.from_numpy(seg)[None, None].expand(1, 3, *seg.shape)
        cl.attribute(x, target=int(t), baselines=base, feature_mask=mask, n_samples=n)


def spearman_mean(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the Spearman correlation of their (non-NaN) superpixel weights."""
    rs = []
    for x, y in zip(a, b, strict=True):
        ok = ~(np.isnan(x) | np.isnan(y))
        rs.append(spearmanr(x[ok], y[ok]).statistic)
    return float(np.nanmean(rs))


def _forward_rate(model: nn.Module, x: torch.Tensor, backward: bool, t: torch.Tensor) -> float:
    def run() -> None:
        for s in range(0, len(x), FWD_BATCH):
            if backward:
                xb = x[s : s + FWD_BATCH].clone().requires_grad_(True)
                model(xb).gather(1, t[s : s + FWD_BATCH, None]).sum().backward()
            else:
                with torch.inference_mode():
                    model(x[s : s + FWD_BATCH])

    run()  # warm-up
    _, dt = _timed(run)
    return len(x) / dt


def _stream_rss_subprocess(n_images: int) -> float:
    """Peak RSS (MiB) of a fresh process streaming saliency over ``n_images`` generated images."""
    code = f"import sys; from leakaudit.bench import _stream_rss_child as f; print(f({n_images}))"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def _stream_rss_child(n_images: int, chunk: int = 500) -> float:
    """Child side: images are generated chunk by chunk, explained, scored, and dropped."""
    from leakaudit.stream import peak_rss_mb, stream_attributions

    configure()
    torch.manual_seed(0)
    model = SmallCNN(4).eval()
    explainer = Saliency(model)

    def items() -> Iterator[tuple[np.ndarray, int]]:
        for c in range(0, n_images, chunk):
            for s in make_shapes(min(chunk, n_images - c), seed=1000 + c):
                yield s.image, s.label

    total = 0.0
    for _, att in stream_attributions(explainer, items(), batch_size=128, progress=False):
        total += float(att.maps.mean())  # "score" the batch, then let it go
    return peak_rss_mb()


def _fmt_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'method':<38}{'img/s':>10}{'× lime pkg':>12}{'× fwd':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['name']:<38}{r['img_s']:>10.2f}{r['x_lime_pkg']:>12.2f}{r['x_forward']:>9.4f}"
        )
    return "\n".join(lines)


def run_bench(
    n_images: int | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    quick: bool = False,
    out_json: str | os.PathLike[str] | None = None,
    fast_samples: int | None = None,
    fast_sampling: str = "orthogonal",
) -> dict[str, Any]:
    """Run every measurement, print the tables, write ``out_json`` (if given), return the dict.

    ``n_images`` LIME images (default 8; 3 with ``quick``). ``fast_samples`` (default
    ``n_samples // 4``) with ``fast_sampling`` is the reduced-sample LIME whose fidelity is
    checked against the same reference.
    """
    configure()
    n_images = n_images or (3 if quick else 8)
    fast_samples = fast_samples or max(2, n_samples // 4)
    ref_samples = 4 * n_samples
    t_start = time.perf_counter()
    model = train_bench_model(seed, quick)
    ds = make_shapes(n_images, seed=seed + 1)
    images = ds.images()
    targets = predict_proba(model, images).argmax(1)
    segments = np.stack([segment(im, N_SEGMENTS) for im in images])

    # throughput images: the same images tiled, enough for a stable timing
    n_fwd = 512 if quick else 2048
    reps = -(-n_fwd // n_images)
    big = np.tile(images, (reps, 1, 1, 1))[:n_fwd]
    big_t = np.tile(targets, reps)[:n_fwd]
    x = to_tensor(big)
    tt = torch.from_numpy(big_t.astype(np.int64))
    fwd = _forward_rate(model, x, False, tt)
    fwd_bwd = _forward_rate(model, x, True, tt)
    ours_sal = Saliency(model)
    ours_sal.attribute(big[:FWD_BATCH], big_t[:FWD_BATCH])
    _, dt = _timed(lambda: ours_sal.attribute(big, big_t))
    sal_rate = n_fwd / dt
    from captum.attr import Saliency as CaptumSaliency

    cs = CaptumSaliency(model)

    def captum_sal() -> None:  # captum as a user would call it: NCHW contiguous, batch 128
        xc = torch.from_numpy(big.transpose(0, 3, 1, 2).copy())
        for s in range(0, n_fwd, 128):
            cs.attribute(xc[s : s + 128].requires_grad_(True), target=tt[s : s + 128], abs=True)

    _, dt = _timed(captum_sal)
    captum_sal_rate = n_fwd / dt

    # LIME speed + fidelity: same images, segments, sample count
    def ours(n: int, sampling: str, s: int) -> Lime:
        width = 0.25 if sampling == "bernoulli" else None  # lime's design keeps lime's kernel
        return Lime(model, n_samples=n, baseline="mean", seed=s, sampling=sampling,
                    forward_batch=FWD_BATCH, kernel_width=width)  # fmt: skip

    ours(n_samples, "bernoulli", seed).attribute(images[:1], targets[:1], segments[:1])
    a_ours, dt_ours = _timed(
        lambda: ours(n_samples, fast_sampling, seed).attribute(images, targets, segments)
    )
    a_fast, dt_fast = _timed(
        lambda: ours(fast_samples, fast_sampling, seed).attribute(images, targets, segments)
    )
    a_bern = ours(n_samples, "bernoulli", seed).attribute(images, targets, segments)
    w_pkg, dt_pkg = _timed(
        lambda: lime_package_weights(model, images, targets, segments, n_samples, seed + 100)
    )
    w_pkg2 = lime_package_weights(model, images, targets, segments, n_samples, seed + 200)
    w_ref = lime_package_weights(model, images, targets, segments, ref_samples, seed + 300)
    n_captum = min(n_images, 2 if quick else 4)
    _, dt_captum = _timed(
        lambda: captum_lime_run(
            model, images[:n_captum], targets[:n_captum], segments[:n_captum], n_samples
        )
    )

    pkg_rate = n_images / dt_pkg
    rows_spec = [
        ("raw forward", fwd),
        ("raw forward+backward", fwd_bwd),
        ("saliency (ours)", sal_rate),
        ("saliency (captum direct)", captum_sal_rate),
        (f"LIME ours, {n_samples} {fast_sampling}", n_images / dt_ours),
        (f"LIME ours, {fast_samples} {fast_sampling}", n_images / dt_fast),
        (f"lime package, {n_samples}", pkg_rate),
        (f"captum Lime, {n_samples} (defaults)", n_captum / dt_captum),
    ]
    rows = [
        {"name": n, "img_s": r, "x_lime_pkg": r / pkg_rate, "x_forward": r / fwd}
        for n, r in rows_spec
    ]
    fidelity = {
        "reference": f"lime package, {ref_samples} samples",
        "lime_pkg_seed_to_seed": spearman_mean(w_pkg, w_pkg2),
        "lime_pkg_vs_ref": spearman_mean(w_pkg, w_ref),
        f"ours_{n_samples}_bernoulli_vs_ref": spearman_mean(a_bern.extras["weights"], w_ref),
        f"ours_{n_samples}_{fast_sampling}_vs_ref": spearman_mean(a_ours.extras["weights"], w_ref),
        f"ours_{fast_samples}_{fast_sampling}_vs_ref": spearman_mean(
            a_fast.extras["weights"], w_ref
        ),
    }

    n_small, n_large = (200, 1000) if quick else (1000, 10_000)
    memory = {
        f"peak_rss_mb_{n_small}": _stream_rss_subprocess(n_small),
        f"peak_rss_mb_{n_large}": _stream_rss_subprocess(n_large),
    }
    cache = _cache_bench(model, images, targets, quick)

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "settings": {
            "n_images": n_images,
            "n_samples": n_samples,
            "seed": seed,
            "quick": quick,
            "n_segments": N_SEGMENTS,
            "fast_samples": fast_samples,
            "fast_sampling": fast_sampling,
        },
        "throughput": rows,
        "fidelity": fidelity,
        "memory": memory,
        "cache": cache,
        "total_s": time.perf_counter() - t_start,
    }
    _print(result)
    if out_json is not None:
        Path(out_json).write_text(json.dumps(result, indent=2))
    return result


def _cache_bench(
    model: nn.Module, images: np.ndarray, targets: np.ndarray, quick: bool
) -> dict[str, float]:
    from leakaudit.cache import AttributionCache, cached_attribute, model_fingerprint

    lime = Lime(model, n_samples=250 if quick else 500, forward_batch=FWD_BATCH)
    with tempfile.TemporaryDirectory() as d:
        cache = AttributionCache(d)
        mh = model_fingerprint(model)
        _, first = _timed(lambda: cached_attribute(lime, mh, images, targets, cache))
        _, again = _timed(lambda: cached_attribute(lime, mh + "", images, targets, cache))
    return {"lime_first_run_s": first, "lime_rerun_s": again, "speedup": first / max(again, 1e-9)}


def _print(r: dict[str, Any]) -> None:
    print(f"\nleakaudit bench — {r['date']} — {r['machine']}")
    print(f"settings: {r['settings']}\n")
    print(_fmt_table(r["throughput"]))
    print("\nfidelity (mean per-image Spearman of superpixel weights):")
    for k, v in r["fidelity"].items():
        print(f"  {k:<40}{v if isinstance(v, str) else f'{v:.3f}'}")
    print("\nmemory (streaming saliency, separate processes):")
    for k, v in r["memory"].items():
        print(f"  {k:<40}{v:.0f}")
    print("\ncache (LIME, same images twice):")
    for k, v in r["cache"].items():
        print(f"  {k:<40}{v:.3f}")
    print(f"\ntotal {r['total_s']:.0f} s")


SCALE_CURVE = (96, 128, 200, 400)  # our LIME sample counts on the samples-vs-fidelity curve


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

    def rate(backward: bool) -> float:
        def run() -> None:
            for s in range(0, n_fwd, batch):
                if backward:
                    xb = x[s : s + batch].clone().requires_grad_(True)
                    model(xb).gather(1, tt[s : s + batch, None]).sum().backward()
                else:
                    with torch.inference_mode():
                        model(x[s : s + batch])

        run()
        return n_fwd / _cpu_timed(run)[1]

    fwd, fwd_bwd = rate(False), rate(True)
    sal = Saliency(model, batch_size=batch)
    sal.attribute(big[:batch], big_t[:batch])
    sal_rate = n_fwd / _cpu_timed(lambda: sal.attribute(big, big_t))[1]

    def ours(n: int, sampling: str, width: float | None = 0.25) -> tuple[np.ndarray, float]:
        lime = Lime(model, n_samples=n, baseline="mean", seed=seed, sampling=sampling,
                    kernel_width=width)  # fmt: skip
        att, dt = _cpu_timed(lambda: lime.attribute(images, targets, segments))
        return att.extras["weights"], n_images / dt

    ours(curve[0], "orthogonal", None)  # warm-up
    w_ref, _ = _timed(
        lambda: lime_package_weights(model, images, targets, segments, ref_samples, seed + 300, 100)
    )
    runs: list[dict[str, Any]] = []
    for n in curve:
        w, r = ours(n, "orthogonal", None)
        runs.append({"name": f"LIME ours, {n} orthogonal, unweighted", "samples": n, "img_s": r,
                     "spearman_vs_ref": spearman_mean(w, w_ref)})  # fmt: skip
    w, r = ours(pkg_samples, "bernoulli")
    runs.append({"name": f"LIME ours, {pkg_samples} bernoulli", "samples": pkg_samples,
                 "img_s": r, "spearman_vs_ref": spearman_mean(w, w_ref)})  # fmt: skip
    for bs in (10, 100):
        w, dt = _cpu_timed(
            lambda bs=bs: lime_package_weights(
                model, images, targets, segments, pkg_samples, seed + 100, bs
            )
        )
        runs.append({"name": f"lime package, {pkg_samples}, batch_size {bs}",
                     "samples": pkg_samples, "img_s": n_images / dt,
                     "spearman_vs_ref": spearman_mean(w, w_ref)})  # fmt: skip
    pkg = {r["name"]: r for r in runs if r["name"].startswith("lime package")}
    pkg10 = pkg[f"lime package, {pkg_samples}, batch_size 10"]
    pkg100 = pkg[f"lime package, {pkg_samples}, batch_size 100"]
    for r in runs:
        r["x_lime_pkg_bs10"] = r["img_s"] / pkg10["img_s"]
        r["x_lime_pkg_bs100"] = r["img_s"] / pkg100["img_s"]
    matching = [
        r for r in runs
        if r["name"].startswith("LIME ours") and r["spearman_vs_ref"] >= pkg10["spearman_vs_ref"]
    ]  # fmt: skip
    best = max(matching, key=lambda r: r["img_s"]) if matching else None
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "settings": {"arch": arch, "size": size, "n_images": n_images, "seed": seed,
                     "quick": quick, "n_segments": N_SEGMENTS, "batch": batch,
                     "pkg_samples": pkg_samples, "ref_samples": ref_samples,
                     "reference": f"lime package, {ref_samples} samples, segment-mean baseline"},
        "throughput": {"raw_forward_img_s": fwd, "raw_forward_backward_img_s": fwd_bwd,
                       "saliency_img_s": sal_rate,
                       "saliency_x_forward_backward": sal_rate / fwd_bwd,
                       "slic_s_per_image": slic_s},
        "lime": runs,
        "fastest_ours_at_lime_fidelity": best and {
            "name": best["name"], "x_lime_pkg_bs10": best["x_lime_pkg_bs10"],
            "x_lime_pkg_bs100": best["x_lime_pkg_bs100"]},
        "total_s": time.perf_counter() - t_start,
    }  # fmt: skip
    _print_scale(result)
    if out_json is not None:
        Path(out_json).write_text(json.dumps(result, indent=2))
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
    head = f"\n{'LIME':<40}{'img/s':>9}{'× pkg bs10':>12}{'× pkg bs100':>13}{'Spearman':>10}"
    print(head + "\n" + "-" * (len(head) - 1))
    for x in r["lime"]:
        print(f"{x['name']:<40}{x['img_s']:>9.3f}{x['x_lime_pkg_bs10']:>12.2f}"
              f"{x['x_lime_pkg_bs100']:>13.2f}{x['spearman_vs_ref']:>10.3f}")  # fmt: skip
    print(
        f"\nfastest of ours at ≥ the lime package's fidelity: {r['fastest_ours_at_lime_fidelity']}"
    )
    print(f"total {r['total_s']:.0f} s")
