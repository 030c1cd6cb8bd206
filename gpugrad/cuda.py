"""``gg.cuda``: is a GPU there, how many, and waiting for queued work.

>>> import gpugrad as gg
>>> isinstance(gg.cuda.is_available(), bool)
True
"""

from __future__ import annotations

from . import device as devices
from .cuda_graph import CapturedStep, graph, is_capturing  # noqa: F401  (gg.cuda.graph)


def is_available() -> bool:
    """True when CuPy imports and sees at least one CUDA GPU (and GPUGRAD_DEVICE is not cpu)."""
    return devices.cuda_is_available()


def device_count() -> int:
    """The number of visible CUDA GPUs; 0 without CuPy or a driver."""
    return devices.cuda_device_count()


def unavailable_reason() -> str | None:
    """Why CUDA cannot be used (None when it can), e.g. for a skip message."""
    return devices._probe_cuda()


def synchronize(device: str | int | None = None) -> None:
    """Wait until every kernel queued on ``device`` (default: the current one) has finished.

    Kernel launches return at once; time GPU work only after synchronizing (or with CUDA events).
    """
    reason = devices._probe_cuda()
    if reason is not None:
        raise RuntimeError(f"cuda.synchronize: CUDA is unavailable: {reason}")
    import cupy

    if device is None:
        cupy.cuda.Device().synchronize()
        return
    name = f"cuda:{device}" if isinstance(device, int) else devices.parse_device(device)
    if not name.startswith("cuda:"):
        raise ValueError(f"cuda.synchronize: {device!r} is not a CUDA device")
    index = int(name[5:])
    cupy.cuda.Device(index).synchronize()
