"""Devices and array modules.

A device is a string: ``"cpu"`` or ``"cuda:N"``. Each device has an array module (``xp``):
NumPy on the CPU, CuPy on a GPU. Ops are written once against ``xp``; this module is the only
place that knows which one a device uses. CuPy is imported lazily, so a CPU-only install never
touches it.
"""

from __future__ import annotations

import os

import numpy as np

_cupy = None  # the cupy module once imported successfully
_cuda_error: str | None = None  # why CUDA is unavailable, once we know


def _probe_cuda() -> str | None:
    """Import CuPy and look for a GPU; return None when usable, else the reason it is not."""
    global _cupy, _cuda_error
    if _cupy is not None or _cuda_error is not None:
        return _cuda_error
    if os.environ.get("GPUGRAD_DEVICE", "").lower() == "cpu":
        _cuda_error = "GPUGRAD_DEVICE=cpu forces the CPU"
        return _cuda_error
    try:
        import cupy
    except ImportError as e:
        _cuda_error = (
            f"CuPy is not installed ({e}); install gpugrad[cuda12] or gpugrad[cuda13] "
            "to match your CUDA driver"
        )
        return _cuda_error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError without a driver; keep the reason for the user
        _cuda_error = f"CuPy found no usable CUDA driver or GPU ({type(e).__name__}: {e})"
        return _cuda_error
    if count == 0:
        _cuda_error = "CuPy is installed but no CUDA GPU is visible"
        return _cuda_error
    _cupy = cupy
    return None


def _reset_cuda_probe() -> None:
    """Forget what the CUDA probe found, so the next device query imports CuPy again (used by
    the emulated CUDA device, which installs its own ``cupy`` module)."""
    global _cupy, _cuda_error
    _cupy = None
    _cuda_error = None


def cuda_is_available() -> bool:
    return _probe_cuda() is None


def cuda_device_count() -> int:
    if _probe_cuda() is not None:
        return 0
    return _cupy.cuda.runtime.getDeviceCount()


def parse_device(device) -> str:
    """Canonical device string: "cpu" or "cuda:N". Accepts "cpu", "cuda", "cuda:N", "auto"."""
    if device is None:
        return "cpu"
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    d = device.strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "auto":
        return "cuda:0" if cuda_is_available() else "cpu"
    if d == "cuda" or d.startswith("cuda:"):
        index = 0
        if d.startswith("cuda:"):
            try:
                index = int(d[5:])
            except ValueError:
                raise ValueError(
                    f"bad device {device!r}: expected 'cuda:N' with N an integer"
                ) from None
        reason = _probe_cuda()
        if reason is not None:
            raise RuntimeError(f"device {device!r} requested but CUDA is unavailable: {reason}")
        count = cuda_device_count()
        if not 0 <= index < count:
            raise RuntimeError(f"device {device!r} does not exist: {count} CUDA device(s) visible")
        return f"cuda:{index}"
    raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")


def xp_for(device: str):
    """The array module of a canonical device string."""
    if device == "cpu":
        return np
    return _cupy


def device_of(array) -> str:
    """The canonical device holding an array (NumPy arrays and scalars are on the CPU)."""
    if isinstance(array, np.ndarray | np.generic):
        return "cpu"
    if _cupy is None and type(array).__module__.startswith("cupy"):
        reason = _probe_cuda()  # a CuPy array before any CUDA use: import and check now
        if reason is not None:
            raise RuntimeError(f"got a CuPy array but CUDA is unavailable: {reason}")
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return f"cuda:{array.device.id}"
    raise TypeError(f"not an array gpugrad understands: {type(array).__name__}")


def move(array, device: str):
    """Copy an array to a device (no copy when it is already there)."""
    src = device_of(array)
    if src == device:
        return array
    try:
        if device == "cpu":
            return _cupy.asnumpy(array)
        with _cupy.cuda.Device(int(device.split(":")[1])):
            # cupy.asarray would return a cuda:0 array unchanged under cuda:1; copy explicitly
            return _cupy.array(array, copy=True)
    except MemoryError as e:
        out_of_memory(e, f"copying {tuple(array.shape)} {array.dtype} from {src} to {device}")


class OutOfMemoryError(MemoryError):
    """An allocation on a GPU (or the host) failed. The message gives the requested size and
    what to try; cached GPU blocks are already handed back, so the process can go on."""

    def __init__(self, message: str, size: int | None = None):
        super().__init__(message)
        self.size = size  # requested bytes, when the array library said


def out_of_memory(error: MemoryError, where: str):
    """Raise ``error`` (CuPy's or NumPy's allocation failure) as gg.OutOfMemoryError.

    CuPy's OutOfMemoryError carries the request in ``_size`` and the pool's use in ``_total``;
    NumPy's carries the shape and dtype. Before raising, the CuPy pools release every cached
    block: the failed step's temporaries are garbage by now, and a caller that catches the
    error (to retry with a smaller batch) should find the memory free.
    """
    if isinstance(error, OutOfMemoryError):
        raise error
    size = getattr(error, "_size", None)
    if size is None and hasattr(error, "shape") and hasattr(error, "dtype"):
        n = 1
        for d in error.shape:
            n *= int(d)
        size = n * np.dtype(error.dtype).itemsize
    total = getattr(error, "_total", None)
    freed = ""
    if _cupy is not None:
        pool = _cupy.get_default_memory_pool()
        before = pool.total_bytes()
        pool.free_all_blocks()
        _cupy.get_default_pinned_memory_pool().free_all_blocks()
        freed = f"; released {before - pool.total_bytes():,} cached bytes"
    requested = f"{size:,} bytes" if size is not None else "an unknown number of bytes"
    held = f" ({total:,} bytes already allocated)" if total is not None else ""
    raise OutOfMemoryError(
        f"{where}: out of memory allocating {requested}{held}{freed}. Free tensors you no "
        "longer need (del them, and drop graphs you will not backward through), use a smaller "
        "batch, or a narrower dtype (float32 instead of float64)",
        size,
    ) from error
