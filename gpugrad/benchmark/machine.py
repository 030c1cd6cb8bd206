"""What a benchmark needs to know about the machine: CPU, versions, thread pools, memory.

Imports only the standard library and NumPy: the worker processes use it too.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.metadata
import os
import platform
import re
import sys
import tracemalloc

# Every BLAS/OpenMP runtime a peer may load reads one of these when it starts: set in a
# worker's environment, they give every peer the same pool size from its first instruction.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def thread_environment(threads: int) -> dict:
    """The variables that pin every pool to ``threads`` (for a worker's environment)."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def thread_limits(threads: int) -> str:
    """Pin BLAS and OpenMP pools in this process (and PyTorch's when it is loaded) to
    ``threads``; returns a description of the pools as they are now."""
    parts = []
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(limits=threads)
        for info in threadpool_info():
            arch = f" {info['architecture']}" if info.get("architecture") else ""
            parts.append(f"{info['internal_api']}{arch} {info['num_threads']}")
    except ImportError:
        parts.append("threadpoolctl not installed: pools set by the environment only")
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        parts.append(f"torch intra-op {torch.get_num_threads()}")
    return ", ".join(parts)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs"


def version_of(dist: str) -> str | None:
    """An installed distribution's version, read from its metadata (nothing is imported)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(peers=()) -> str:
    """gpugrad, Python, NumPy, Numba and each peer's library, without importing any of them."""
    import numpy as np

    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for dist in ("gpugrad", "numba", *[p for p in peers if p not in ("gpugrad", "numpy")]):
        v = version_of(dist)
        if v:
            parts.append(f"{dist} {v}")
    return ", ".join(parts)


def busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # minus idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- memory

try:
    _libc = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: RSS numbers still come, only less tight
    _libc = None


def _rss_kb() -> tuple[int, int] | None:
    """(current RSS, peak RSS since the last reset) in KiB from /proc, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            text = f.read()
    except OSError:
        return None
    rss = re.search(r"VmRSS:\s+(\d+)", text)
    hwm = re.search(r"VmHWM:\s+(\d+)", text)
    return (int(rss.group(1)), int(hwm.group(1))) if rss and hwm else None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure_memory(build, steps: int = 2, traced: bool = True) -> dict:
    """Peak MiB above the level before ``build()`` ran, over building a peer and ``steps``
    steps: tracemalloc's peak (NumPy's allocations; ``traced``) and the kernel's peak RSS."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)  # hand freed heap back, so the baseline is what is really in use
    before = _rss_kb()
    rss_ok = before is not None and _reset_peak_rss()
    tracemalloc.start()
    peer = build()
    for _ in range(steps):
        peer.step()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = _rss_kb() if rss_ok else None
    del peer
    return {
        "traced_mib": traced_peak / 2**20 if traced else None,
        "rss_mib": (after[1] - before[0]) / 1024 if after else None,
    }
