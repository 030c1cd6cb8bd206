"""The vectorisable float32 math of the Numba kernels (backends/cpu_math.py) is as exact as
float32 allows over its whole range, edges included, and the float64 forms are libm's."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from gpugrad.backends import cpu_math

EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e-8, -1e-8, 0.625, -0.625, 88.0]


def _values(lo, hi, n=200_000):
    rng = np.random.default_rng(0)
    wide = rng.uniform(lo, hi, n)
    fine = rng.standard_normal(n) * 1e-3  # near 0, where cancellation would show
    return np.concatenate([wide, fine, EDGES]).astype(np.float32)


@njit(error_model="numpy")  # as the kernels: no ZeroDivisionError branch in the loop
def _all(x, out):
    """Every function on every value (one compilation per dtype for the whole module)."""
    for i in range(x.size):
        v = x[i]
        out[0, i] = cpu_math.exp_nonpos(-abs(v))
        out[1, i] = cpu_math.log1p_unit(min(abs(v), 1.0) if v == v else v)
        out[2, i] = cpu_math.tanh(v)
        out[3, i] = cpu_math.sigmoid(v)


NAMES = ("exp_nonpos", "log1p_unit", "tanh", "sigmoid")


def _mapped(name):
    def call(a):
        out = np.empty((4, a.size), a.dtype)
        _all(a, out)
        return out[NAMES.index(name)]

    return call


def _check(got, want, ulps):
    """Within ``ulps`` float32 units of the float64 answer (relative to its magnitude, with
    float32's smallest normal as the floor), the same NaNs and the same infinities."""
    want32 = want.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want32))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want32))
    ok = np.isfinite(want32)
    scale = np.maximum(np.abs(want[ok]), np.finfo(np.float32).tiny)
    err = np.abs(got[ok].astype(np.float64) - want[ok]) / scale
    assert err.max() <= ulps * np.finfo(np.float32).eps, err.max()


def test_exp_of_nonpositive_values():
    x = _values(-120.0, 0.0)
    x = -np.abs(x)  # the function's domain: x <= 0, -inf, NaN (_all passes -|x|)
    want = np.exp(x.astype(np.float64))
    want[x < -87.0] = 0.0  # below float32's normal range the kernels flush to 0
    _check(_mapped("exp_nonpos")(x), want, ulps=2)


def test_log1p_on_the_unit_interval():
    x = np.abs(_values(0.0, 1.0))
    x = x[~(x > 1)]  # the domain: 0 <= e <= 1 (and NaN)
    _check(_mapped("log1p_unit")(x), np.log1p(x.astype(np.float64)), ulps=2)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_tanh_and_sigmoid_everywhere(name):
    x = _values(-30.0, 30.0)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        want = np.tanh(x64) if name == "tanh" else 1 / (1 + np.exp(-x64))
    _check(_mapped(name)(x), want, ulps=3)


@pytest.mark.parametrize("name", ["exp_nonpos", "log1p_unit", "tanh", "sigmoid"])
def test_float64_is_libm(name):
    x = np.linspace(-0.9, 0.0, 101) if name == "exp_nonpos" else np.linspace(0, 1, 101)
    want = {
        "exp_nonpos": lambda v: np.exp(-np.abs(v)),
        "log1p_unit": np.log1p,
        "tanh": np.tanh,
        "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    }[name](x)
    np.testing.assert_allclose(_mapped(name)(x), want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_float32_loops_are_vectorised(name):
    """The point of the module: a float32 loop over each function compiles to 8-wide vectors
    on an AVX2 machine (4-wide with SSE only)."""
    fn = getattr(cpu_math, name)

    @njit(error_model="numpy")
    def loop(a, out):
        for i in range(a.size):
            out[i] = fn(a[i])

    loop(np.zeros(16, np.float32), np.zeros(16, np.float32))
    ir = loop.inspect_llvm(loop.signatures[0])
    assert "<8 x float>" in ir or "<4 x float>" in ir
