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
from leakaudit.explain.lime import LIME_SAMPLES, Lime, segment
from leakaudit.explain.saliency import Saliency
from leakaudit.models.predict import predict_proba, to_tensor
from leakaudit.models.train import train_classifier
from leakaudit.models.zoo import SmallCNN
from leakaudit.paths import write_atomic
from leakaudit.runtime import autocast, configure, model_device

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
    amp: bool = False,
) -> np.ndarray:
    """Superpixel weights from ``lime.lime_image`` with our segments; (N, Kmax) NaN-padded.
    ``batch_size`` is lime's own (its default is 10). ``amp``: the classifier function runs in
    the same autocast as our ``--amp``, so the package can be timed at equal arithmetic."""
    from lime.lime_image import LimeImageExplainer

    def classifier_fn(batch: np.ndarray) -> np.ndarray:
        with autocast(model_device(model), amp):
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
    child = "from leakaudit.experiments.bench import _stream_rss_child as f"
    code = f"import sys; {child}; print(f({n_images}))"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def _stream_rss_child(n_images: int, chunk: int = 500) -> float:
    """Child side: images are generated chunk by chunk, explained, scored, and dropped."""
    from leakaudit.explain.stream import peak_rss_mb, stream_attributions

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
        write_atomic(out_json, json.dumps(result, indent=2))  # never through a link
    return result


def _cache_bench(
    model: nn.Module, images: np.ndarray, targets: np.ndarray, quick: bool
) -> dict[str, float]:
    from leakaudit.explain.cache import AttributionCache, cached_attribute, model_fingerprint

    lime = Lime(
        model, n_samples=LIME_SAMPLES // 2 if quick else LIME_SAMPLES, forward_batch=FWD_BATCH
    )
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
