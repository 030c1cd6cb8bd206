"""Shared fixtures: the device dimension, tolerances, and one comparison helper."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg

# Tolerances by (dtype, kind). Forward float32: torch.testing.assert_close's defaults.
# Grads in float32 get 10x more: reductions in backward sum in a different order than the
# reference. float64: well above rounding error, far below any real bug.
TOL = {
    ("float32", "fwd"): dict(rtol=1.3e-6 * 10, atol=1e-5),
    ("float32", "grad"): dict(rtol=1e-4, atol=1e-5),
    ("float64", "fwd"): dict(rtol=1e-10, atol=1e-12),
    ("float64", "grad"): dict(rtol=1e-8, atol=1e-10),
}


def tol(dtype, kind="fwd"):
    return TOL[(np.dtype(dtype).name, kind)]


def _cuda_reason():
    from gpugrad.backends import _probe_cuda

    return _probe_cuda()


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=pytest.mark.gpu),
    ]
)
def device(request):
    """Run a test on the CPU and, where a GPU exists, on CUDA (reported as skipped otherwise)."""
    if request.param == "cuda":
        reason = _cuda_reason()
        if reason is not None:
            pytest.skip(f"no CUDA device: {reason}")
    return request.param


@pytest.fixture(autouse=True)
def _restore_config():
    saved = (gg.config.kernels, gg.config.matmul)
    yield
    gg.config.kernels, gg.config.matmul = saved


def assert_close(actual, expected, rtol, atol, what=""):
    """Compare arrays/tensors; on failure show shape, dtype, max errors and first mismatches."""
    a = actual.numpy() if isinstance(actual, gg.Tensor) else np.asarray(actual)
    e = expected.numpy() if isinstance(expected, gg.Tensor) else np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    ok = np.isclose(a64, e64, rtol=rtol, atol=atol, equal_nan=True)
    if not ok.all():
        err = np.abs(a64 - e64)
        bad = np.argwhere(~ok)[:5]
        rows = ", ".join(f"{tuple(i)}: {a64[tuple(i)]!r} vs {e64[tuple(i)]!r}" for i in bad)
        raise AssertionError(
            f"{what}: {int((~ok).sum())}/{ok.size} mismatched ({a.dtype}, shape {a.shape}); "
            f"max abs err {np.nanmax(err):.3g}; first: {rows}"
        )
