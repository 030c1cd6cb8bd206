"""The one place the emulator touches gpugrad's internals (kept small to retarget easily).

gpugrad caches what it learned about CUDA: the device probe (whether ``import cupy`` works and
sees a GPU) and, in the CUDA backend, compiled modules, kernel handles, the SM count, pointer
tables and hyperparameter uploads, all keyed by device id. Installing or removing the emulated
``cupy`` must drop all of it, or a real GPU would be handed emulated modules (and back).
"""

from __future__ import annotations

_BACKEND_CACHES = ("_modules", "_functions", "_sm_count", "_tables", "_hp_cache")


def reset_gpugrad_cuda_state() -> None:
    """Forget gpugrad's CUDA probe and the CUDA backend's per-device caches."""
    try:  # after the restructuring the probe lives in gpugrad.device
        from gpugrad import device as _device

        _device._reset_cuda_probe()
    except (ImportError, AttributeError):
        from gpugrad import backends

        backends._cupy = None
        backends._cuda_error = None
    from gpugrad.backends import cuda

    for name in _BACKEND_CACHES:
        cache = getattr(cuda, name, None)
        if isinstance(cache, dict):
            cache.clear()
