"""An emulated CUDA device: gpugrad's kernels (kernels/*.cu) run on the CPU, checked.

The kernels are compiled by g++ after a header that provides the CUDA built-ins, and launched
through a CuPy stand-in whose arrays live in guarded host buffers. Threads of a block run as
interleaved fibers under several orders per launch; barriers, warp intrinsics, alignment and
memory bounds are checked; outputs that depend on the order fail. See ``cuda_emu.h`` for the
device side, ``_build.py`` for compiling, ``_launch_args.py`` (argument packing and checks) and
``_runtime.py`` (running under several orders, faults) for launches, ``standin/`` for the CuPy
stand-in.

    from gpugrad import cuda_emulator
    with cuda_emulator.installed() as cp:      # `import cupy` is the stand-in in here
        x = gg.tensor([1.0, -2.0], device="cuda")
        x.relu()                                # runs kernels/activations.cu:relu_fwd_f32

What it models: CUDA's execution semantics within a block (barriers, warp-synchronous
intrinsics, shared memory), independent thread order, memory bounds and alignment, CuPy's
argument packing. What it cannot: timing and occupancy, concurrency between blocks (blocks run
one after another, so inter-block races other than float atomics go unseen), preemption between
two synchronisation points (a race that needs an interleaving inside straight-line code), and
the GPU math library's last bits (host libm and IEEE rounding; no fused multiply-add unless the
source calls fma).
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

from ._build import available, build, build_many
from ._config import Settings, settings
from ._gpugrad import reset_gpugrad_cuda_state
from ._runtime import stats
from .errors import (
    CompileError,
    DeviceTrap,
    EmulatorError,
    EmulatorUnavailable,
    KernelFault,
    LaunchError,
    NotEmulatedError,
    OrderDependentResult,
    SyncError,
)

__all__ = [
    "CompileError",
    "DeviceTrap",
    "EmulatorError",
    "EmulatorUnavailable",
    "KernelFault",
    "LaunchError",
    "NotEmulatedError",
    "OrderDependentResult",
    "Settings",
    "SyncError",
    "available",
    "build",
    "build_kernels",
    "configured",
    "installed",
    "settings",
    "stats",
]

_install_lock = threading.RLock()
_depth = 0
_saved_modules: dict = {}
_saved_env: str | None = None


def _is_cupy_name(name: str) -> bool:
    return name in ("cupy", "cupyx") or name.startswith(("cupy.", "cupyx.", "cupy_backends"))


def install():
    """Make ``import cupy`` / ``import cupyx`` the stand-in and reset gpugrad's CUDA state.
    Re-entrant; undo with ``uninstall()``. Returns the stand-in ``cupy`` module."""
    global _depth, _saved_env
    from .standin import MODULES

    with _install_lock:
        if _depth == 0:
            _saved_modules.clear()
            for name in [n for n in sys.modules if _is_cupy_name(n)]:
                _saved_modules[name] = sys.modules.pop(name)
            sys.modules.update(MODULES)
            # GPUGRAD_DEVICE=cpu forces the CPU; the emulated device is asked for explicitly.
            _saved_env = os.environ.pop("GPUGRAD_DEVICE", None)
            reset_gpugrad_cuda_state()
        _depth += 1
        return MODULES["cupy"]


def uninstall() -> None:
    """Undo one ``install()``; the last one restores the previous ``cupy`` (real CuPy, or
    none) and resets gpugrad's CUDA state again."""
    global _depth, _saved_env
    with _install_lock:
        if _depth == 0:
            return
        _depth -= 1
        if _depth:
            return
        for name in [n for n in sys.modules if _is_cupy_name(n)]:
            del sys.modules[name]
        sys.modules.update(_saved_modules)
        _saved_modules.clear()
        if _saved_env is not None:
            os.environ["GPUGRAD_DEVICE"] = _saved_env
            _saved_env = None
        reset_gpugrad_cuda_state()


@contextmanager
def installed(**overrides):
    """The stand-in installed as ``cupy`` for the block; ``overrides`` set ``settings``
    fields (orders, seed, sm_count, memory_bytes) for its duration."""
    with configured(**overrides):
        cp = install()
        try:
            yield cp
        finally:
            uninstall()


@contextmanager
def configured(**overrides):
    """Change ``settings`` fields for a block (gpugrad's cached SM count is reset too)."""
    saved = {k: getattr(settings, k) for k in overrides}
    for k, v in overrides.items():
        if not hasattr(settings, k):
            raise TypeError(f"unknown emulator setting {k!r}; one of {sorted(vars(settings))}")
        setattr(settings, k, v)
    if "sm_count" in overrides:
        reset_gpugrad_cuda_state()
    try:
        yield settings
    finally:
        for k, v in saved.items():
            setattr(settings, k, v)
        if "sm_count" in overrides:
            reset_gpugrad_cuda_state()


def build_kernels(files=None, jobs=None):
    """Compile gpugrad's kernel files for the host in parallel (a cache hit is a load)."""
    from gpugrad.backends import cuda

    files = list(files or cuda.KERNELS)
    return build_many([(cuda.source(f), cuda.OPTIONS) for f in files], jobs=jobs)
