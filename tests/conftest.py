"""Shared fixtures: the device dimension, tolerances, and one comparison helper."""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

import gpugrad as gg

# Fuzzing profiles (tests/test_fuzz.py). "ci": a fixed example sequence (derandomized, so a CI
# failure reproduces locally) small enough for well under 2 minutes on 2 cores. "long": a
# fresh random search, for a night or before a release: GPUGRAD_FUZZ=long pytest tests/test_fuzz.py
# No "explain" phase: it writes patch files into the tree and imports a module that warns.
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
settings.register_profile(
    "ci",
    max_examples=800,
    deadline=None,
    derandomize=True,
    database=None,
    phases=_PHASES,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=5000,
    phases=_PHASES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("long" if os.environ.get("GPUGRAD_FUZZ", "").lower() == "long" else "ci")
# When a property fails, hypothesis's pytest plugin imports libcst to suggest a patch, and
# libcst's import of mypy_extensions.TypedDict warns: an error under filterwarnings=error that
# would hide the failure behind an INTERNALERROR. Import it once now, with that warning off.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):  # without libcst hypothesis skips the patch
        import hypothesis.extra._patching  # noqa: F401

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
    from gpugrad.device import _probe_cuda

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
    saved = (gg.config.kernels, gg.config.matmul, gg.config.deterministic)
    yield
    gg.config.kernels, gg.config.matmul, gg.config.deterministic = saved


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


@pytest.fixture
def kernels():
    """Yields a setter for gg.config.kernels; the autouse fixture above restores it."""

    def set_kernels(value):
        gg.config.kernels = value

    return set_kernels
