"""Process-wide speed settings measured on this project's 2-core CPU machines.

glibc returns large activation buffers to the OS after every forward pass and maps them again on
the next one, which halves CNN throughput; two ``mallopt`` calls keep them in the heap. The call
is a harmless no-op on non-glibc platforms. See docs in README "Performance".

Kept in the heap, freed buffers can also strand: small results that live on (a batch's scores and
compact maps) land between big freed batch buffers, the heap cannot shrink, and the process grows
with the number of images though nothing live does (Grad-CAM at 224 px: ~127 KB an image, 1.8 GB
after 10 000). ``release_freed_memory`` hands the free pages back, rarely (docs/scale.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import random
from typing import Any

import numpy as np
import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_configured = False
TRIM_SLACK_BYTES = 128 * 2**20  # growth since the last trim that makes the next one worth it
_trim = {"base": 0}  # resident bytes right after the last trim


@functools.cache
def _libc_function(name: str, argtypes: tuple) -> Any:
    """A function of the C library (``None`` where there is no such library or function, e.g.
    ``malloc_trim`` and ``mallopt`` off glibc); looked up once per process."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        fn = getattr(ctypes.CDLL(libc_name), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    return fn


def tune_allocator() -> bool:
    """Stop glibc from unmapping big buffers between passes. Returns True when applied."""
    mallopt = _libc_function("mallopt", (ctypes.c_int, ctypes.c_int))
    if mallopt is None:
        return False
    ok_mmap = mallopt(_M_MMAP_MAX, 0)
    ok_trim = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok_mmap and ok_trim)


def rss_bytes() -> int:
    """This process's resident set now (Linux ``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def release_freed_memory(slack: int = TRIM_SLACK_BYTES) -> bool:
    """``malloc_trim(0)`` once the resident set has grown ``slack`` bytes since the last trim:
    free heap pages go back to the OS, live memory is untouched. Called between batches; the
    check is one read of /proc, and a trim happens at most once per ``slack`` of growth, so the
    mallopt speed-up (no unmapping on every pass) stays. Returns True when it trimmed."""
    now = rss_bytes()
    if not now or now < _trim["base"] + slack:
        return False
    fn = _libc_function("malloc_trim", (ctypes.c_size_t,))
    if fn is None:
        _trim["base"] = now
        return False
    fn(0)
    _trim["base"] = rss_bytes()
    return True


def configure() -> None:
    """Apply once per process: allocator fix and one intra-op thread per core.

    ``LEAKAUDIT_THREADS`` overrides the thread count: on a machine shared with other jobs,
    one thread per core oversubscribes the CPU and training can slow down many times over."""
    global _configured
    if _configured:
        return
    _configured = True
    if os.environ.get("LEAKAUDIT_NO_MALLOPT") != "1":
        tune_allocator()
    threads = os.environ.get("LEAKAUDIT_THREADS")
    torch.set_num_threads(int(threads) if threads else max(1, os.cpu_count() or 1))


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and Python's RNG; return a numpy Generator for explicit use."""
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; a named device that is not there is an error
    (a user who asks for the GPU must not silently get a 30× slower CPU run)."""
    from leakaudit.errors import ConfigError  # local: errors imports nothing, keep it that way

    name = (name or "auto").lower()
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device {name!r}; choose from {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    if name == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ConfigError("device 'mps' requested but Apple MPS is not available on this machine")
    return torch.device(name)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model`` lives (its first parameter or buffer; CPU for a parameter-free model).

    Explainers and behaviour tests read the device from the model instead of taking another
    argument: moving the model once (``model.to(device)``) moves the whole audit."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def autocast(device: torch.device, enabled: bool):
    """Mixed-precision context for forward-only passes (``--amp``); a no-op when disabled.

    bfloat16 on CPU (float16 is slower than float32 there), float16 on CUDA/MPS. Only sampling
    methods' forward passes use it. It is not free: bfloat16 keeps 8 bits of mantissa, and
    LIME's superpixel weights are small probability differences, so on the CPU it cost
    fidelity wherever measured (Spearman against a full-precision reference: 0.936 instead of
    0.988 at 128 samples, 64 px; 0.992 instead of 0.9965 at 224 px) while running the forward
    3.2× faster on a CPU with AMX (docs/scale.md). The audit says so when it is asked for."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def amp_dtype(device: torch.device) -> torch.dtype:
    """What ``--amp`` computes in on ``device``: bfloat16 on the CPU, float16 elsewhere."""
    return torch.bfloat16 if device.type == "cpu" else torch.float16


AMP_CPU_WARNING = (
    "warning: --amp on the CPU runs LIME and occlusion in bfloat16: faster on a CPU with AMX, "
    "but LIME's superpixel ranking then agrees less with full precision (Spearman 0.94 vs 0.99 "
    "at 128 samples, docs/scale.md); use it for a first look, not for a verdict you rely on"
)


def images_per_batch(base: int, shape: tuple[int, ...]) -> int:
    """``base`` images per batch at 64×64 px or smaller, scaled down by pixel count above it
    (at least 8): gradients of a ResNet-18 at 224 px keep ~40 MB of activations per image, so
    the 64-image batches that suit 64 px put 3.5 GB in memory. Below 64 px nothing changes."""
    pixels = int(shape[0]) * int(shape[1])
    return max(8, min(base, base * 4096 // max(pixels, 1)))
