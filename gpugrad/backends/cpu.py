"""CPU fast paths: Numba-compiled single passes for the fused losses and bias + activation.

Each function here registers itself on the op it speeds up (``@fused.mse_loss.fast("cpu")``),
has the signature and results of that op's reference in ``fused/``, and returns
``NotImplemented`` for inputs it does not cover (float16, which Numba lacks; shapes where the
reference was measured faster), so the reference runs instead. The NumPy composition of a fused
loss walks the (N, C) logits 6-10 times and allocates as many temporaries; the loops below read
the logits twice per row and write the gradient once. Sums accumulate in float64 whatever the
input dtype.

The ``_kernel`` functions are plain Python under ``NUMBA_DISABLE_JIT=1``, so a debugger can step
through them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .. import activations, fused
from ..activations import CODES
from .cpu_act import act_from_pre, faster_than_numpy, grad_from_pre


@njit(cache=True)
def _softmax_xent_kernel(logits, targets, ignore_index, weight, eps, scale, per_row, dlogits):
    """Per row: the max, sum(exp) (kept in dlogits), the loss, and the gradient
    ((1 - eps) w[t] (p - onehot(t)) + (eps / C) (W p - w)) * scale; ``weight`` is all ones
    without class weights, ``eps`` the label smoothing (the fused.cross_entropy formulas)."""
    n, c = logits.shape
    total_w = 0.0
    for j in range(c):
        total_w += weight[j]
    share = eps / c
    for i in range(n):
        row = logits[i]
        m = row[0]
        for j in range(1, c):
            if row[j] > m:
                m = row[j]
        s = 0.0
        for j in range(c):
            e = math.exp(row[j] - m)
            dlogits[i, j] = e
            s += e
        t = targets[i]
        if t == ignore_index:
            # An ignored row's gradient is 0 times its softmax: NaN when the row holds NaN,
            # +inf or only -inf, as in the reference and PyTorch.
            per_row[i] = 0.0
            for j in range(c):
                dlogits[i, j] = dlogits[i, j] / s * 0.0
            continue
        log_s = math.log(s)
        main = (1.0 - eps) * weight[t]
        loss = main * (log_s - (row[t] - m))
        if eps != 0.0:
            spread = 0.0
            for j in range(c):
                spread += weight[j] * (log_s - (row[j] - m))
            loss += share * spread
        per_row[i] = loss
        inv = (main + share * total_w) * scale / s
        if eps != 0.0:
            for j in range(c):
                dlogits[i, j] = dlogits[i, j] * inv - share * weight[j] * scale
        else:
            for j in range(c):
                dlogits[i, j] *= inv
        dlogits[i, t] -= main * scale


# Above this many classes NumPy's vectorized exp beats the scalar loop (measured on 2 x86
# cores, float32, N=256: Numba 1.9x faster at C=32, 1.15x at C=100, 0.66x at C=256).
WIDE_ROWS = 128


@fused.cross_entropy.fast("cpu", kernels=("_softmax_xent_kernel",))
def cross_entropy(
    xp, logits, targets, *, reduction="mean", ignore_index=-100, weight=None, label_smoothing=0.0
):
    # Numba has no float16 arrays: the reference computes those in float32.
    if logits.shape[1] > WIDE_ROWS or logits.dtype.itemsize < 4:
        return NotImplemented
    logits = np.ascontiguousarray(logits)
    targets = np.ascontiguousarray(targets)
    valid = targets != ignore_index
    if weight is None:
        count = int(np.count_nonzero(valid))
        weight = np.ones(logits.shape[1], np.float64)
    else:
        count = float(weight[targets[valid]].sum())
        weight = np.ascontiguousarray(weight, np.float64)
    scale = 1.0 if reduction != "mean" else (1.0 / count if count else 0.0)
    per_row = np.empty(logits.shape[0], np.float64)
    dlogits = np.empty_like(logits)
    eps = float(label_smoothing)
    _softmax_xent_kernel(logits, targets, ignore_index, weight, eps, scale, per_row, dlogits)
    return _finish(per_row, reduction, count, logits.dtype), {"dlogits": dlogits}


@njit(cache=True)
def _bce_logits_kernel(s, t, scale, per_item, ds):
    total = 0.0
    for i in range(s.size):
        x = s[i]
        e = math.exp(-abs(x))
        loss = max(x, 0.0) - x * t[i] + math.log1p(e)
        per_item[i] = loss
        total += loss
        sig = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
        ds[i] = (sig - t[i]) * scale
    return total


@fused.binary_cross_entropy_with_logits.fast("cpu", kernels=("_bce_logits_kernel",))
def binary_cross_entropy_with_logits(xp, logits, targets, *, reduction="mean", pos_weight=None,
                                     weight=None):  # fmt: skip
    # No float16 in Numba (the reference runs it in float32); weighted forms: the reference.
    if logits.dtype.itemsize < 4 or pos_weight is not None or weight is not None:
        return NotImplemented
    s = np.ascontiguousarray(logits).reshape(-1)
    t = np.ascontiguousarray(targets).reshape(-1)
    scale = 1.0 if reduction != "mean" else (1.0 / s.size if s.size else 0.0)
    per_item = np.empty(s.size, s.dtype)
    ds = np.empty_like(s)
    total = _bce_logits_kernel(s, t, scale, per_item, ds)
    out = _total(total, per_item.reshape(logits.shape), reduction, s.size, logits.dtype)
    return out, {"dlogits": ds.reshape(logits.shape), "dtargets": None, "scale": scale}


@njit(cache=True)
def _mse_kernel(y, t, factor, per_item, dy):
    total = 0.0
    for i in range(y.size):
        d = y[i] - t[i]
        per_item[i] = d * d
        total += d * d
        dy[i] = d * factor
    return total


@fused.mse_loss.fast("cpu", kernels=("_mse_kernel",))
def mse_loss(xp, input, targets, *, reduction="mean"):
    if input.dtype.itemsize < 4:  # no float16 in Numba; the reference runs it in float32
        return NotImplemented
    y = np.ascontiguousarray(input).reshape(-1)
    t = np.ascontiguousarray(targets).reshape(-1)
    factor = 2.0 if reduction != "mean" else (2.0 / y.size if y.size else 0.0)
    per_item = np.empty(y.size, y.dtype)
    dy = np.empty_like(y)
    total = _mse_kernel(y, t, factor, per_item, dy)
    out = _total(total, per_item.reshape(input.shape), reduction, y.size, input.dtype)
    return out, {"dinput": dy.reshape(input.shape)}


def _finish(per_row, reduction, count, dtype):
    return _total(per_row.sum(), per_row.astype(dtype), reduction, count, dtype)


def _total(total, per_item, reduction, count, dtype):
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return np.asarray(total, dtype)
    return np.asarray(total / count if count else np.nan, dtype)


# ----------------------------------------------------------------------------- bias + activation
# act(z + b) over an (N, C) block in one sweep: one read of z, one write of out, where NumPy's
# reference makes two to four temporaries. Backward reads dout and out once, writes dz once and
# sums the bias gradient in the same sweep. Measured on 2 cores, (256, 512) float32: Numba wins
# for relu, leaky_relu and identity forwards and every backward; for tanh and sigmoid forwards
# NumPy's SIMD transcendentals beat Numba's scalar libm calls (no SVML) by 2-7x, so those two
# forwards run the NumPy reference. GELU and SiLU (derivatives from z + b, not from the output)
# go through the scalar functions of ``cpu_act``, where those beat NumPy: exact GELU 5-15x
# faster forward and backward, SiLU 2-4x in float64; SiLU in float32 and the tanh GELU lose
# (0.1-1.1x) and run the reference. The codes are gpugrad.activations.CODES; Numba reads the
# module globals below as compile-time constants.

RELU, LEAKY_RELU, TANH, SIGMOID = (
    CODES["relu"],
    CODES["leaky_relu"],
    CODES["tanh"],
    CODES["sigmoid"],
)
IDENTITY = CODES["identity"]


@njit(cache=True)
def _bias_act_fwd_kernel(z, b, code, slope, out):
    n, c = z.shape
    zero = z.dtype.type(0)
    s = z.dtype.type(slope)
    for i in range(n):
        zi = z[i]
        oi = out[i]
        if code == RELU:
            for j in range(c):
                v = zi[j] + b[j]
                oi[j] = v if v > zero else zero
        elif code == LEAKY_RELU:
            for j in range(c):
                v = zi[j] + b[j]
                oi[j] = v if v > zero else v * s
        elif code == IDENTITY:
            for j in range(c):
                oi[j] = zi[j] + b[j]
        else:  # gelu, silu (faster_than_numpy keeps gelu_tanh away)
            for j in range(c):
                oi[j] = act_from_pre(code, zi[j] + b[j])


@njit(cache=True)
def _bias_act_bwd_kernel(dout, out, code, slope, dz, db):
    n, c = dout.shape
    one = out.dtype.type(1)
    zero = out.dtype.type(0)
    s = out.dtype.type(slope)
    acc = np.zeros(c, np.float64)
    for i in range(n):
        di = dout[i]
        oi = out[i]
        zi = dz[i]
        for j in range(c):
            o = oi[j]
            if code == RELU:
                d = di[j] if o > zero else zero
            elif code == LEAKY_RELU:
                d = di[j] if o > zero else di[j] * s
            elif code == TANH:
                d = di[j] * (one - o * o)
            elif code == SIGMOID:
                d = di[j] * (o * (one - o))
            else:
                d = di[j]
            zi[j] = d
            acc[j] += d
    for j in range(c):
        db[j] = acc[j]


@njit(cache=True)
def _bias_act_bwd_pre_kernel(dout, z, b, code, dz, db):
    """The backward of gelu and silu: the derivative at z + b, recomputed."""
    n, c = dout.shape
    acc = np.zeros(c, np.float64)
    for i in range(n):
        di = dout[i]
        zi = z[i]
        gi = dz[i]
        for j in range(c):
            d = di[j] * grad_from_pre(code, zi[j] + b[j])
            gi[j] = d
            acc[j] += d
    for j in range(c):
        db[j] = acc[j]


def _rows(a):
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def _kernel_takes(*arrays) -> bool:
    """float32/float64 of one dtype with at least one element in a row: what the loops cover
    (Numba has no float16; an (N, 0) block has no rows to reshape)."""
    dt = arrays[0].dtype
    return (
        dt.kind == "f"
        and dt.itemsize >= 4
        and all(a.dtype == dt for a in arrays)
        and arrays[0].ndim > 0
        and arrays[0].size > 0
    )


@fused.bias_act.fast("cpu", kernels=("_bias_act_fwd_kernel", "numpy tanh"))
def bias_act(xp, z, b, *, activation="relu", negative_slope=0.01):
    code = activations.check(activation, negative_slope)
    if not _kernel_takes(z, b) or b.shape != z.shape[-1:] or activation == "sigmoid":
        return NotImplemented
    if activation in activations.FROM_INPUT and not faster_than_numpy(code, z.dtype):
        return NotImplemented
    if activation == "tanh":
        # NumPy's SIMD tanh beats a scalar Numba loop; running it in place on the sum saves
        # the reference's second temporary and a pass over memory.
        out = np.add(z, b)
        return np.tanh(out, out=out)
    z2 = _rows(z)
    out = np.empty_like(z2)
    _bias_act_fwd_kernel(z2, np.ascontiguousarray(b), code, negative_slope, out)
    return out.reshape(z.shape)


@fused.bias_act.fast_backward(
    "cpu", owns=True, kernels=("_bias_act_bwd_kernel", "_bias_act_bwd_pre_kernel")
)
def bias_act_backward(xp, dout, out, activation, negative_slope, needs, z=None, b=None):
    """(dz, db) in one sweep; the identity (dz is dout itself) is left to the reference."""
    if activation == "identity" or not _kernel_takes(out) or dout.shape != out.shape:
        return NotImplemented
    code = CODES[activation]
    pre = activation in activations.FROM_INPUT
    if pre and not (
        _kernel_takes(out, z, b) and z.shape == out.shape and faster_than_numpy(code, z.dtype)
    ):
        return NotImplemented
    d2 = _rows(dout.astype(out.dtype, copy=False))
    dz = np.empty_like(d2)
    db = np.empty(d2.shape[1], out.dtype)
    if pre:
        _bias_act_bwd_pre_kernel(d2, _rows(z), np.ascontiguousarray(b), code, dz, db)
    else:
        _bias_act_bwd_kernel(d2, _rows(out), code, negative_slope, dz, db)
    return (dz.reshape(out.shape) if needs[0] else None), (db if needs[1] else None)
