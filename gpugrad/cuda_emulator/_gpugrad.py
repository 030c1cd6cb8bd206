"""The one place the emulator touches gpugrad's internals (kept small to retarget easily).

gpugrad caches what it learned about CUDA: the device probe (whether ``import cupy`` works and
sees a GPU) and, in the CUDA backend, compiled modules, kernel handles, the SM count, pointer
tables and hyperparameter uploads, all keyed by device id. Installing or removing the emulated
``cupy`` must drop all of it (``gpugrad.backends.cuda.reset_caches``), or a real GPU would be
handed emulated modules (and back).
"""

from __future__ import annotations


def reset_gpugrad_cuda_state() -> None:
    """Forget gpugrad's CUDA probe and the CUDA backend's per-device caches."""
    from gpugrad import device
    from gpugrad.backends import cuda

    device._reset_cuda_probe()
    cuda.reset_caches()
