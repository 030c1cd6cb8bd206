"""Fixtures for tests on the emulated CUDA device (gpugrad.cuda_emulator).

Import them into a test module (``from emulated import built_kernels, emulated_cp,
emulated_cuda``): they are the fixtures ``emulator_kernels``, ``cp`` and ``cuda``. Without
g++ every test using them is skipped with that reason; nothing else is ever skipped quietly.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpugrad import cuda_emulator

UNAVAILABLE = cuda_emulator.available()


@pytest.fixture(scope="session", name="emulator_kernels")
def built_kernels():
    """Every kernels/*.cu built for the host once per session (in parallel; cached on disk)."""
    if UNAVAILABLE is not None:
        pytest.skip(f"CUDA emulator unavailable: {UNAVAILABLE}")
    return cuda_emulator.build_kernels()


@pytest.fixture(name="cp")
def emulated_cp(emulator_kernels):
    """The CuPy stand-in installed as ``cupy`` (gpugrad sees one emulated CUDA device)."""
    with cuda_emulator.installed() as cupy:
        yield cupy


@pytest.fixture(name="cuda")
def emulated_cuda(cp):
    """gpugrad's CUDA backend, launching on the emulated device."""
    from gpugrad.backends import cuda

    return cuda


# float32 kernels against a float64 reference (host libm: within an ulp or two of float64).
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


def close(actual, expected, dtype, what, tol=None):
    """Assert a device (or host) array matches a float64 reference; NaN matches NaN. Names
    elements still holding cupy.empty's fill (never written by the kernel)."""
    from gpugrad.cuda_emulator._memory import unwritten_mask

    a = actual.get() if hasattr(actual, "get") else np.asarray(actual)
    e = np.asarray(expected, np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    ok = np.isclose(a.astype(np.float64), e, equal_nan=True, **(tol or TOL[np.dtype(dtype).name]))
    if not ok.all():
        bad = tuple(np.argwhere(~ok)[0]) if a.ndim else ()
        never = unwritten_mask(a)
        note = ""
        if never is not None and never.any():
            note = f"; {int(never.sum())} element(s) never written (cupy.empty's fill)"
        raise AssertionError(
            f"{what} {np.dtype(dtype).name} {a.shape}: {int((~ok).sum())} mismatch(es), first at "
            f"{bad}: {a[bad]!r} vs {e[bad]!r}{note}"
        )
