"""Process-wide speed settings measured on this project's 2-core CPU machines.

glibc returns large activation buffers to the OS after every forward pass and maps them again on
the next one, which halves CNN throughput; two ``mallopt`` calls keep them in the heap. The call
is a harmless no-op on non-glibc platforms. See docs in README "Performance".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random

import numpy as np
import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_configured = False


def tune_allocator() -> bool:
    """Stop glibc from unmapping big buffers between passes. Returns True when applied."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_mmap = mallopt(_M_MMAP_MAX, 0)
    ok_trim = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok_mmap and ok_trim)


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
