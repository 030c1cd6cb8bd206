"""The one place the emulator touches gpugrad's internals (kept small to retarget easily).

gpugrad caches what it learned about CUDA: the device probe (whether ``import cupy`` works and
sees a GPU) and, in the CUDA backend, compiled modules, kernel handles, the SM count, pointer
tables and hyperparameter uploads, all keyed by device id. Installing or removing the emulated
``cupy`` must drop all of it, or a real GPU would be handed emulated modules (and back).
"""

from __future__ import annotations

import importlib

# module -> its per-process caches of CUDA objects (private names: keep in step with them)
_BACKEND_CACHES = {
    "gpugrad.backends.cuda.runtime": ("_modules", "_functions", "_sm_count"),
    "gpugrad.backends.cuda.optim": ("_tables", "_hp_cache"),
}


def reset_gpugrad_cuda_state() -> None:
    """Forget gpugrad's CUDA probe and the CUDA backend's per-device caches."""
    from gpugrad import device

    device._reset_cuda_probe()
    for name, caches in _BACKEND_CACHES.items():
        module = importlib.import_module(name)
        for cache in caches:
            getattr(module, cache).clear()
