"""CPU fast paths of GELU and SiLU: one Numba sweep where the NumPy reference makes many.

The NumPy reference of exact GELU calls the C library's erf once per element through
``np.frompyfunc`` (NumPy has no erf), and SiLU makes four temporaries; the loops below read x
once and write once, with the same formulas (``gpugrad.activations``). The scalar functions are
shared with the fused bias + activation kernels (``backends/cpu.py``). Codes are
``activations.CODES``, read by Numba as compile-time constants.

Measured on 2 cores (``gpugrad bench --kernels`` and minimums of repeated runs over (256, 512)
to (1024, 1024) blocks): exact GELU 6-28x faster than the reference, forward and backward
(8.5-13x in the committed kernel report); SiLU in float64 1.5-3x faster; SiLU in float32 and
the tanh GELU in either dtype 0.2-1.2x (NumPy's SIMD exp and tanh against Numba's scalar libm
calls, no SVML here), so those decline and the reference runs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import ops
from ..activations import CODES, INV_SQRT_2PI, SQRT_HALF

GELU, SILU = CODES["gelu"], CODES["silu"]


@njit(cache=True)
def sigmoid(v):
    e = math.exp(-abs(v))  # sign-split: exp never overflows
    return 1.0 / (1.0 + e) if v >= 0 else e / (1.0 + e)


@njit(cache=True)
def act_from_pre(code, v):
    """gelu (exact) or silu of one value (the tanh GELU always runs the NumPy reference)."""
    if code == GELU:
        return v * (0.5 + 0.5 * math.erf(v * SQRT_HALF))
    return v * sigmoid(v)


@njit(cache=True)
def grad_from_pre(code, v):
    """d act / d v of gelu (exact) or silu at one value."""
    if code == GELU:
        return 0.5 + 0.5 * math.erf(v * SQRT_HALF) + v * INV_SQRT_2PI * math.exp(-0.5 * v * v)
    s = sigmoid(v)
    return s * (1.0 + v * (1.0 - s))


@njit(cache=True)
def _act_fwd_kernel(x, code, out):
    for i in range(x.size):
        out[i] = act_from_pre(code, x[i])


@njit(cache=True)
def _act_bwd_kernel(dout, x, code, dx):
    for i in range(x.size):
        dx[i] = dout[i] * grad_from_pre(code, x[i])


def _takes(*arrays) -> bool:
    """float32/float64 of one dtype and one shape: what the loops cover (no float16 in Numba;
    a broadcast dout is left to the reference)."""
    dt, shape = arrays[0].dtype, arrays[0].shape
    return (
        dt.kind == "f"
        and dt.itemsize >= 4
        and all(a.dtype == dt and a.shape == shape for a in arrays)
    )


def _forward(x, code):
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    _act_fwd_kernel(flat, code, out)
    return out.reshape(x.shape)


def _backward(dout, x, code):
    d = np.ascontiguousarray(dout).reshape(-1)
    flat = np.ascontiguousarray(x).reshape(-1)
    dx = np.empty_like(flat)
    _act_bwd_kernel(d, flat, code, dx)
    return (dx.reshape(x.shape),)


def faster_than_numpy(code, dtype) -> bool:
    """Where the loops beat the reference (measured; module docstring): exact GELU always,
    SiLU in float64 only, the tanh GELU never (so the loops do not implement it)."""
    return code == GELU or (code == SILU and dtype.itemsize == 8)


@ops.gelu.fast("cpu", kernels=("_act_fwd_kernel",))
def gelu(xp, x, *, approximate="none"):
    # the tanh form and an unknown mode (the reference names it) are not taken
    if approximate != "none" or not _takes(x):
        return NotImplemented
    return _forward(x, GELU)


@ops.gelu.fast_backward("cpu", owns=True, kernels=("_act_bwd_kernel",))
def gelu_backward(xp, dout, x, approximate):
    if approximate != "none" or not _takes(dout, x):
        return NotImplemented
    return _backward(dout, x, GELU)


@ops.silu.fast("cpu", kernels=("_act_fwd_kernel",))
def silu(xp, x):
    if not _takes(x) or not faster_than_numpy(SILU, x.dtype):
        return NotImplemented
    return _forward(x, SILU)


@ops.silu.fast_backward("cpu", owns=True, kernels=("_act_bwd_kernel",))
def silu_backward(xp, dout, x):
    if not _takes(dout, x) or not faster_than_numpy(SILU, x.dtype):
        return NotImplemented
    return _backward(dout, x, SILU)
