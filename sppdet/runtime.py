"""Process-wide CPU settings: thread counts and the C allocator.

glibc's malloc serves every request above 32 MB with a fresh ``mmap`` and returns it on
``free``, so each large activation (a 1200-px image's first layers hold 100–200 MB) is
page-faulted in, zeroed by the kernel, and unmapped again, on every forward pass. On a 2-core
machine that made MobileNetV2's conv 2–4× slower at the sizes SPP-net uses, and R-CNN's batches
of 64 crops alike (``tools/bench_conv.py`` measures it). Serving them from the heap and keeping
up to 1 GB of freed memory for reuse removes that cost; peak memory stays the same.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS")
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
KEEP_FREED_BYTES = 1 << 30
_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Make glibc malloc reuse large blocks instead of mapping them anew; True if applied.

    A no-op (False) off glibc, or when ``SPPDET_NO_MALLOC_TUNING`` is set. Safe to call again.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if os.environ.get("SPPDET_NO_MALLOC_TUNING") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    if not _tuned:
        log.debug("mallopt refused the allocator settings; running with glibc defaults")
    return _tuned


def configure(threads: int | None = None) -> None:
    """Thread counts for torch and OpenCV (default: every core) and the allocator settings."""
    import cv2
    import torch

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    tune_cpu_allocator()


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the body with torch's intra-op thread count set to ``n`` (restored after)."""
    import torch

    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


@contextlib.contextmanager
def single_threaded():
    """torch, OpenCV and the BLAS libraries on one thread for the body.

    Used around the arithmetic whose result must not depend on where it runs: oneDNN's conv and
    fc give results that differ in the last bit between 1 and 2 threads (8 in a million fp16
    map values on a BCCD image), so the cached conv maps and the mining features are always
    computed on one thread, in the driver (``--workers 1``) as in a worker process or on a
    cluster node. That makes the trained model independent of the worker count.
    """
    import cv2
    from threadpoolctl import threadpool_limits

    old_cv = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with torch_threads(1), threadpool_limits(1):
            yield
    finally:
        cv2.setNumThreads(old_cv)
