"""Scalar math for the Numba kernels that LLVM can vectorise: exp, log1p, tanh, sigmoid.

Numba calls libm for ``math.exp`` and friends, one value at a time (there is no SVML in a
default install), so a loop around them runs scalar while NumPy's own exp/tanh are SIMD. For
float32 the functions below are plain arithmetic instead (a range reduction, a polynomial, an
exponent built from integer bits, and selects for the edge cases), which LLVM turns into 8-wide
AVX2 code on any x86 CPU, provided the calling kernel is compiled with ``error_model="numpy"``
(Python's error model puts a ZeroDivisionError branch on every division, which stops the
vectoriser); for float64 they call libm as before. Each is exact to about one unit
in the last place of float32 (``tests/test_cpu_math.py`` checks them against NumPy in float64
over the whole range, edges included: 0, -0, +-inf, NaN, underflow).

The polynomials are Cephes' (expf, tanhf) and the atanh series of log1p. Under
``NUMBA_DISABLE_JIT=1`` every function is its libm form in plain Python.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

_F = np.float32
# exp: x = k ln2 + r, |r| <= ln2 / 2, with ln2 split in two so that k * _C1 is exact
_LOG2E, _C1, _C2 = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_E0, _E1, _E2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_E3, _E4, _E5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
_LOWEST = _F(-87.0)  # exp(-87) ~ 1.6e-38, the smallest normal float32 is 1.2e-38
_HALF, _ONE, _TWO, _ZERO = _F(0.5), _F(1.0), _F(2.0), _F(0.0)
# tanh for |x| < 0.625: x + x^3 P(x^2)
_T0, _T1, _T2 = _F(-5.70498872745e-3), _F(2.06390887954e-2), _F(-5.37397155531e-2)
_T3, _T4, _TANH_SMALL = _F(1.33314422036e-1), _F(-3.33332819422e-1), _F(0.625)
# log1p(e) = 2 atanh(u), u = e / (2 + e) <= 1/3 for 0 <= e <= 1: odd series to u^15
_L = tuple(_F(1.0 / k) for k in (3, 5, 7, 9, 11, 13, 15))


def _is_f32(x) -> bool:
    return isinstance(x, types.Float) and x.bitwidth == 32


def exp_nonpos(x):
    """exp(x) for x <= 0 (and -inf, NaN): a softmax's shifted logits, exp(-|s|)."""
    return math.exp(x)


@overload(exp_nonpos)
def _exp_nonpos(x):
    if not _is_f32(x):
        return lambda x: math.exp(x)

    def impl(x):
        xc = x if x > _LOWEST else _LOWEST  # NaN and -inf take the clamp; fixed below
        k = np.floor(xc * _LOG2E + _HALF)
        r = xc - k * _C1
        r = r - k * _C2
        p = (((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5) * (r * r) + r + _ONE
        scale = np.int32((np.int32(k) + np.int32(127)) << np.int32(23)).view(np.float32)
        y = p * scale
        y = y if x >= _LOWEST else _ZERO  # below float32's normal range (and -inf): 0
        return y if x == x else x  # NaN stays NaN

    return impl


def log1p_unit(e):
    """log(1 + e) for 0 <= e <= 1 (and NaN)."""
    return math.log1p(e)


@overload(log1p_unit)
def _log1p_unit(e):
    if not _is_f32(e):
        return lambda e: math.log1p(e)

    def impl(e):
        u = e / (_TWO + e)
        z = u * u
        p = _L[6]
        p = p * z + _L[5]
        p = p * z + _L[4]
        p = p * z + _L[3]
        p = p * z + _L[2]
        p = p * z + _L[1]
        p = p * z + _L[0]
        return _TWO * u * (p * z + _ONE)

    return impl


def tanh(x):
    return math.tanh(x)


@overload(tanh)
def _tanh(x):
    if not _is_f32(x):
        return lambda x: math.tanh(x)

    def impl(x):
        z = x * x
        small = ((((_T0 * z + _T1) * z + _T2) * z + _T3) * z + _T4) * z * x + x
        e = exp_nonpos(-_TWO * abs(x))
        t = (_ONE - e) / (_ONE + e)
        large = t if x >= _ZERO else -t  # NaN takes this branch and stays NaN
        return small if abs(x) < _TANH_SMALL else large

    return impl


def sigmoid(x):
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@overload(sigmoid)
def _sigmoid(x):
    one = _ONE if _is_f32(x) else 1.0

    def impl(x):
        e = exp_nonpos(-abs(x))
        return one / (one + e) if x >= 0 else e / (one + e)  # NaN: e / (1 + e) is NaN

    return impl
