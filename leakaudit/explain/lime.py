"""Batched LIME (Ribeiro et al. 2016) in torch: many images' perturbations in one forward.

Per image: SLIC superpixels; ``n_samples`` binary masks (the i.i.d. and antithetic designs
keep every superpixel in the first); hidden superpixels take the *baseline* image's pixels; the
model's probability for the target class is fitted by a ridge regression (alpha 1, intercept;
optionally kernel-weighted as lime does: cosine distance to the all-on mask, kernel width 0.25)
solved in closed form for all images at once.

Masks come from an orthogonal design by default (``sampling="orthogonal"``: whole Hadamard
blocks with fold-over, ``lime_design.py``) fitted without lime's kernel (``kernel_width=None``:
a kernel would weigh z and 1−z differently and undo the fold-over's balance). Measured best per
sample against lime's own 4 000-sample reference (docs/scale.md §2, 8 images × 3 seeds):
128 samples match lime's fidelity at 1 000 (0.977 vs 0.978), 400 reach 0.988. The earlier
default, antithetic pairs (z, 1−z) with lime's kernel, stays available (``sampling="antithetic"``,
``kernel_width=0.25``), and ``sampling="bernoulli"`` reproduces lime's i.i.d. design.

The default baseline is a strong blur, not lime's superpixel-mean colour: hiding a *solid*
rectangle by its own mean colour changes nothing, so a mean-colour LIME can miss exactly the
tell we look for (see README, "Method choices").

The attribution map spreads each superpixel's weight evenly over its pixels (weight / area), so
the map sums to the total weight and the pixel-level scores equal the superpixel-level shares.
Its *top* is not the map's maximum (the highest weight per pixel) but the highest-weighted
superpixel: the attribution carries its ``segments`` and ``weights``, and
``Attribution.rank_keys()`` gives the metrics that rank pixels each pixel's superpixel weight.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from skimage.filters import gaussian
from skimage.segmentation import slic

from leakaudit.explain.base import Attribution, CliOption, Explainer, MethodTraits
from leakaudit.explain.lime_design import orthogonal_design
from leakaudit.models.predict import as_logits, non_finite_error
from leakaudit.runtime import autocast, configure, model_device

BASELINES = ("blur", "constant", "mean")

# The defaults, declared here once: the constructor, the traits (CLI, cost) and
# ``registry.method_params`` read them. 500 samples: the thresholds were calibrated with it.
LIME_SAMPLES = 500
LIME_SEGMENTS = 50
LIME_BASELINE = "blur"
MIN_SAMPLES = 8  # fewer perturbations than this cannot rank superpixels (the CLI's lower bound)
SANITY_SAMPLES = 200  # the randomisation check runs LIME with at most this many samples: cost

# Perturbed images per forward pass. On the CPU 256 was measured fastest at 64 px (larger
# batches spill the caches); the batch is capped so one batch's input stays ≤ 16 MB (27 images
# at 224 px: a ResNet-18's live activations are then ~0.3 GB, not 1+ GB). On a GPU the cap
# is a 1/64 share of free memory for the input (activations of a ResNet-sized model take tens
# of times the input), at most 1024.
CPU_FORWARD_BATCH = 256
CPU_BATCH_BYTES = 16 * 2**20


def forward_batch_for(image_shape: tuple[int, ...], device: torch.device) -> int:
    """Perturbed images per forward pass for images of ``image_shape`` (H, W, C) on ``device``."""
    per_image = 4 * int(np.prod(image_shape))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(max(16, min(1024, free // 64 // per_image)))
    return int(max(8, min(CPU_FORWARD_BATCH, CPU_BATCH_BYTES // per_image)))


def segment(image: np.ndarray, n_segments: int, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels (labels 0..K-1). ``sigma=1`` smooths noise; quickshift gives ~4
    segments at 64×64, which is useless, so it is not offered."""
    seg = slic(
        image.astype(np.float64),
        n_segments=n_segments,
        compactness=compactness,
        sigma=1.0,
        start_label=0,
        channel_axis=-1,
    )
    _, seg = np.unique(seg, return_inverse=True)  # dense labels 0..K-1
    return seg.reshape(image.shape[:2]).astype(np.int64)


def baseline_image(
    image: np.ndarray, segments: np.ndarray, kind: str, value: float = 0.5
) -> np.ndarray:
    """What a hidden superpixel shows: blur (sigma = side/8), a constant grey, or segment means."""
    if kind == "blur":
        sigma = max(image.shape[:2]) / 8.0
        return gaussian(image, sigma=sigma, channel_axis=-1, preserve_range=True).astype(np.float32)
    if kind == "constant":
        return np.full_like(image, value, dtype=np.float32)
    if kind == "mean":
        k = int(segments.max()) + 1
        flat = image.reshape(-1, image.shape[-1])
        counts = np.bincount(segments.ravel(), minlength=k)[:, None]
        sums = np.stack(
            [np.bincount(segments.ravel(), flat[:, c], minlength=k) for c in range(flat.shape[1])],
            axis=1,
        )
        return (sums / np.maximum(counts, 1))[segments].astype(np.float32)
    raise ValueError(f"unknown baseline {kind!r}; choose from {BASELINES}")


def image_seed(seed: int, image: np.ndarray) -> np.random.Generator:
    """Per-image stream from (seed, image content): results do not depend on batching or order."""
    return np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(image).tobytes())])


SAMPLINGS = ("bernoulli", "antithetic", "balanced", "orthogonal")


def sample_masks(
    rng: np.random.Generator, n_samples: int, k: int, sampling: str = "bernoulli"
) -> np.ndarray:
    """Binary (n_samples, k) design; row 0 keeps everything (the unperturbed image), as in
    lime, except in the ``orthogonal`` design.

    ``bernoulli``: lime's i.i.d. fair coins. ``antithetic``: the second half repeats the first
    with every bit flipped (z, 1−z), so each superpixel is on in exactly half the pairs.
    ``balanced``: every column has exactly ⌊S/2⌋ ones in a random order, which removes the
    chance imbalance between superpixels' on-counts.
    ``orthogonal``: blocks of whole Hadamard matrices with fold-over (``lime_design``): columns
    balanced and uncorrelated, main effects free of even-order interactions. Its row 0 is a
    design row, not the all-on mask, which would break a fold-over pair.
    """
    if sampling == "bernoulli":
        z = rng.integers(0, 2, size=(n_samples, k)).astype(np.float32)
    elif sampling == "antithetic":
        half = rng.integers(0, 2, size=((n_samples + 1) // 2, k)).astype(np.float32)
        z = np.concatenate([half, 1.0 - half])[:n_samples]
    elif sampling == "orthogonal":
        return orthogonal_design(rng, n_samples, k)  # whole fold-over pairs: no all-on row
    elif sampling == "balanced":
        col = (np.arange(n_samples) < n_samples // 2).astype(np.float32)
        z = rng.permuted(np.repeat(col[:, None], k, axis=1), axis=0)
    else:
        raise ValueError(f"unknown sampling {sampling!r}; choose from {SAMPLINGS}")
    z[0] = 1.0
    return z


def kernel_weights(z: torch.Tensor, k: torch.Tensor, width: float | None) -> torch.Tensor:
    """lime's kernel: sqrt(exp(-d²/width²)) with d the cosine distance to the all-on mask;
    ``width=None``: every sample weighs 1 (keeps a fold-over design's pairs balanced)."""
    if width is None:
        return torch.ones(z.shape[:2])
    on = z.sum(-1)
    d = 1.0 - torch.sqrt(on / k[:, None])
    return torch.sqrt(torch.exp(-(d**2) / width**2))


def weighted_ridge(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """Batched closed-form ridge with unpenalised intercept. z (B,S,K), y (B,S), w (B,S) → (B,K)."""
    z, y, w = z.double(), y.double(), w.double()
    wsum = w.sum(1, keepdim=True)
    z_mean = (w[..., None] * z).sum(1, keepdim=True) / wsum[..., None]
    y_mean = (w * y).sum(1, keepdim=True) / wsum
    zc, yc = z - z_mean, y - y_mean
    zw = zc * w[..., None]
    a = zw.transpose(1, 2) @ zc + alpha * torch.eye(z.shape[-1], dtype=z.dtype)
    b = zw.transpose(1, 2) @ yc[..., None]
    return torch.linalg.solve(a, b)[..., 0]


class Lime(Explainer):
    name = "lime"
    reduction = "superpixel weight spread evenly over its pixels (weight / area), signed"
    traits = MethodTraits(
        cost=lambda p, _shape: (int(p["n_samples"]), 0),
        costly=True,
        amp=True,
        sanity_caps={"n_samples": SANITY_SAMPLES},
        cli=(
            CliOption(
                "--lime-samples",
                "n_samples",
                LIME_SAMPLES,
                f"LIME samples per image [{LIME_SAMPLES}].",
                minimum=MIN_SAMPLES,
            ),
        ),
    )

    def __init__(
        self,
        model: torch.nn.Module,
        n_samples: int = LIME_SAMPLES,
        n_segments: int = LIME_SEGMENTS,
        baseline: str = LIME_BASELINE,
        kernel_width: float | None = None,
        alpha: float = 1.0,
        seed: int = 0,
        forward_batch: int | None = None,
        images_per_chunk: int = 16,
        sampling: str = "orthogonal",
        amp: bool = False,
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; choose from {SAMPLINGS}")
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; choose from {BASELINES}")
        if n_samples < 2:
            raise ValueError("LIME needs at least 2 samples")
        super().__init__(
            model,
            n_samples=n_samples,
            n_segments=n_segments,
            baseline=baseline,
            kernel_width=kernel_width,
            alpha=alpha,
            seed=seed,
            sampling=sampling,
            **({"amp": True} if amp else {}),  # recorded (and cache-keyed) only when on
        )
        self.forward_batch = forward_batch
        self.images_per_chunk = images_per_chunk

    def attribute(
        self, images: np.ndarray, targets: np.ndarray, segments: np.ndarray | None = None
    ) -> Attribution:
        """``segments`` (N, H, W) dense labels 0..K-1 reuses a segmentation (e.g. the same images
        under another model, or a benchmark's shared one); None computes SLIC here."""
        configure()
        p = self.params
        n, h, w = images.shape[:3]
        if segments is None:
            segments = np.stack([segment(img, p["n_segments"]) for img in images]) if n else None
        else:
            segments = np.array(segments, dtype=np.int64)  # a writable copy for torch
        maps = np.zeros((n, h, w), dtype=np.float32)
        k_max = int(segments.max()) + 1 if n else 0
        weights = np.full((n, k_max), np.nan, dtype=np.float32)
        for start in range(0, n, self.images_per_chunk):
            sl = slice(start, start + self.images_per_chunk)
            coef = self._explain_chunk(images[sl], np.asarray(targets[sl]), segments[sl])
            for j, c in enumerate(coef):
                i = start + j
                k = int(segments[i].max()) + 1
                weights[i, :k] = c[:k]
                area = np.bincount(segments[i].ravel(), minlength=k)
                maps[i] = (c[:k] / area)[segments[i]]
        extras = {"segments": segments, "weights": weights} if n else {}
        return Attribution(maps, self.name, self.reduction, extras)

    @torch.inference_mode()
    def _explain_chunk(self, images: np.ndarray, targets: np.ndarray, segments: np.ndarray):
        p = self.params
        s = p["n_samples"]
        b = len(images)
        ks = [int(seg.max()) + 1 for seg in segments]
        k_max = max(ks)
        z = np.zeros((b, s, k_max), dtype=np.float32)
        for i, img in enumerate(images):
            rng = image_seed(p["seed"], img)
            z[i, :, : ks[i]] = sample_masks(rng, s, ks[i], p["sampling"])
        zt = torch.from_numpy(z)
        y = self.responses(images, targets, segments, z)
        wts = kernel_weights(zt, torch.tensor(ks, dtype=torch.float32), p["kernel_width"])
        coef = weighted_ridge(zt, torch.from_numpy(y), wts, p["alpha"])
        return coef.float().numpy()

    @torch.inference_mode()
    def responses(
        self, images: np.ndarray, targets: np.ndarray, segments: np.ndarray, z: np.ndarray
    ) -> np.ndarray:
        """The model's target probability for every mask: z (B, S, Kmax) → (B, S) float32.
        Public so that designs can be studied on the same forward pass (examples/lime_curve.py)."""
        p = self.params
        b, s, k_max = z.shape
        base = np.stack(
            [baseline_image(im, sg, p["baseline"]) for im, sg in zip(images, segments, strict=True)]
        )
        z_rows = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)).reshape(b * s, k_max)
        seg_t = torch.from_numpy(segments).reshape(b, -1)
        # NHWC throughout: x.permute(0, 3, 1, 2) is then already channels_last, no copy
        img_t = torch.from_numpy(np.array(images, dtype=np.float32))  # copy: views may be odd
        diff_t = img_t - torch.from_numpy(base)
        base_t = torch.from_numpy(base)
        tgt = torch.from_numpy(np.array(targets, dtype=np.int64))
        device = model_device(self.model)
        if device.type != "cpu":  # perturbations are built where the model runs
            z_rows, seg_t, base_t, diff_t, tgt = (
                t.to(device) for t in (z_rows, seg_t, base_t, diff_t, tgt)
            )
        fb = self.forward_batch or forward_batch_for(images.shape[1:], device)
        y = torch.empty(b * s, device=device)
        # one forward batch at a time: pixel masks for rows r (image r // s, sample r % s) are
        # built only for that batch, so memory is O(forward_batch), not O(images × samples)
        for f in range(0, b * s, fb):
            rows = torch.arange(f, min(f + fb, b * s), device=device)
            owner = rows // s
            keep = torch.gather(z_rows[rows], 1, seg_t[owner])  # (F, H*W)
            keep = keep.reshape(len(rows), *images.shape[1:3], 1)
            x = torch.addcmul(base_t[owner], diff_t[owner], keep).permute(0, 3, 1, 2)
            with autocast(device, bool(p.get("amp"))):
                out = self.model(x)
            prob = torch.softmax(as_logits(out).float(), dim=1)
            y[f : f + len(rows)] = prob.gather(1, tgt[owner][:, None])[:, 0]
        y = y.cpu()
        bad = int((~torch.isfinite(y)).sum())
        if bad:
            raise non_finite_error(bad, b * s, "LIME-perturbed images")
        return y.reshape(b, s).numpy()
