"""CPU fast paths: Numba-compiled single passes for the fused losses and bias + activation.

Each function here registers itself on the op it speeds up (``@fused.mse_loss.fast("cpu")``),
has the signature and results of that op's reference in ``fused/``, and returns
``NotImplemented`` for inputs it does not cover (float16, which Numba lacks; float64 logits of
more than WIDE_ROWS classes), so the reference runs instead. The NumPy composition of a fused
loss walks the (N, C) logits 6-10 times and allocates as many temporaries; the loops below read
the logits twice per row and write the gradient once. Sums accumulate in float64 whatever the
input dtype, over eight partial sums (``_sum64``). Every loop is written so that LLVM can
vectorise it: exp, log1p, tanh and sigmoid come from ``cpu_math.py`` (SIMD arithmetic for
float32 instead of a libm call per value), and the kernels use ``error_model="numpy"`` (no
ZeroDivisionError branch in the loops). ``gpugrad bench --kernels`` times each one against its
reference.

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
from .cpu_math import exp_nonpos, log1p_unit, sigmoid, tanh

# float64 logits: the exp is libm's, one value at a time (float32 runs vectorised, see
# cpu_math.py); above this many classes NumPy's SIMD exp over the rows wins.
WIDE_ROWS = 128
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))  # what Numba's loops take (no float16)


@njit(cache=True, error_model="numpy")
def _sum64(a, lo, hi):
    """sum(a[lo:hi]) in float64 over eight partial sums: independent additions that pipeline
    (one running sum waits ~4 cycles per element), in an order fixed by the length alone."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    j = lo
    while j + 8 <= hi:
        s0 += a[j]
        s1 += a[j + 1]
        s2 += a[j + 2]
        s3 += a[j + 3]
        s4 += a[j + 4]
        s5 += a[j + 5]
        s6 += a[j + 6]
        s7 += a[j + 7]
        j += 8
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    while j < hi:
        s += a[j]
        j += 1
    return s


@njit(cache=True, error_model="numpy")
def _softmax_xent_kernel(logits, targets, ignore_index, weight, eps, mean, per_row, dlogits):
    """Loss per row into per_row and its gradient into dlogits; returns the summed loss and
    the mean's divisor (the summed class weights of the rows whose target is not ignored).

    With class weights w and label smoothing eps (``weight`` is all ones without weights), a
    row's gradient is ((1 - eps) w[t] (p - onehot(t)) + (eps / C) (sum(w) p - w)) * scale, as
    in fused.cross_entropy.
    """
    n, c = logits.shape
    count = 0.0
    for i in range(n):
        if targets[i] != ignore_index:
            count += weight[targets[i]]
    scale = (1.0 / count if count else 0.0) if mean else 1.0
    total_w = _sum64(weight, 0, c)
    share = eps / c
    total = 0.0
    for i in range(n):
        row = logits[i]
        d = dlogits[i]
        m = row[0]
        for j in range(1, c):  # a NaN logit makes its exp, and so the row, NaN below
            v = row[j]
            m = v if v > m else m
        for j in range(c):
            d[j] = exp_nonpos(row[j] - m)
        s = _sum64(d, 0, c)
        t = targets[i]
        if t == ignore_index:
            # An ignored row's gradient is 0 times its softmax: NaN when the row holds NaN,
            # +inf or only -inf, as in the reference and PyTorch.
            per_row[i] = 0.0
            for j in range(c):
                d[j] = d[j] / s * 0.0
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
        total += loss
        inv = logits.dtype.type((main + share * total_w) * scale / s)
        if eps != 0.0:
            for j in range(c):
                d[j] = d[j] * inv - share * weight[j] * scale
        else:
            for j in range(c):
                d[j] *= inv
        d[t] -= main * scale
    return total, count


_ONES = {}  # class count -> float64 ones: the weights of the unweighted loss


@fused.cross_entropy.fast("cpu", kernels=("_softmax_xent_kernel",))
def cross_entropy(
    xp, logits, targets, *, reduction="mean", ignore_index=-100, weight=None, label_smoothing=0.0
):
    # Numba has no float16 arrays: the reference computes those in float32.
    dt = logits.dtype
    c = logits.shape[1]
    if dt not in _FLOATS or c == 0 or (dt == np.float64 and c > WIDE_ROWS):
        return NotImplemented
    if not logits.flags.c_contiguous:
        logits = np.ascontiguousarray(logits)
    if not targets.flags.c_contiguous:
        targets = np.ascontiguousarray(targets)
    if weight is None:
        weight = _ONES.get(c)
        if weight is None:
            weight = _ONES[c] = np.ones(c, np.float64)
    else:
        weight = np.ascontiguousarray(weight, np.float64)
    per_row = np.empty(logits.shape[0], np.float64)
    dlogits = np.empty(logits.shape, dt)
    total, count = _softmax_xent_kernel(
        logits, targets, ignore_index, weight, float(label_smoothing), reduction == "mean",
        per_row, dlogits,
    )  # fmt: skip
    per_item = per_row.astype(dt) if reduction == "none" else None
    return _total(total, per_item, reduction, count, dt), {"dlogits": dlogits}


# Losses over many elements: per-element values go to a block of BLOCK (L1-resident) that is
# summed before the next one, or to the output when reduction="none" asks for them.
BLOCK = 1024


@njit(cache=True, error_model="numpy")
def _bce_logits_kernel(s, t, scale, keep, per_item, ds):
    zero, one, sc = s.dtype.type(0), s.dtype.type(1), s.dtype.type(scale)
    n = s.size
    scratch = np.empty(min(n, BLOCK), s.dtype)
    total = 0.0
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        # views indexed from 0: indices LLVM can prove non-negative, so the loop vectorises
        sv, tv, dv = s[lo:hi], t[lo:hi], ds[lo:hi]
        buf = per_item[lo:hi] if keep else scratch[: hi - lo]
        for k in range(hi - lo):
            x = sv[k]
            e = exp_nonpos(-abs(x))
            buf[k] = (x if x > zero else zero) - x * tv[k] + log1p_unit(e)
            sig = one / (one + e) if x >= zero else e / (one + e)
            dv[k] = (sig - tv[k]) * sc
        total += _sum64(buf, 0, hi - lo)
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
    keep = reduction == "none"
    per_item = np.empty(s.size if keep else 0, s.dtype)
    ds = np.empty_like(s)
    total = _bce_logits_kernel(s, t, scale, keep, per_item, ds)
    per_item = per_item.reshape(logits.shape) if keep else None
    out = _total(total, per_item, reduction, s.size, s.dtype)
    return out, {"dlogits": ds.reshape(logits.shape), "dtargets": None, "scale": scale}


@njit(cache=True, error_model="numpy")
def _mse_kernel(y, t, factor, keep, per_item, dy):
    f = y.dtype.type(factor)
    n = y.size
    scratch = np.empty(min(n, BLOCK), y.dtype)
    total = 0.0
    for lo in range(0, n, BLOCK):
        hi = min(lo + BLOCK, n)
        yv, tv, dv = y[lo:hi], t[lo:hi], dy[lo:hi]
        buf = per_item[lo:hi] if keep else scratch[: hi - lo]
        for k in range(hi - lo):
            d = yv[k] - tv[k]
            buf[k] = d * d
            dv[k] = d * f
        total += _sum64(buf, 0, hi - lo)
    return total


@fused.mse_loss.fast("cpu", kernels=("_mse_kernel",))
def mse_loss(xp, input, targets, *, reduction="mean"):
    if input.dtype.itemsize < 4:  # no float16 in Numba; the reference runs it in float32
        return NotImplemented
    y = np.ascontiguousarray(input).reshape(-1)
    t = np.ascontiguousarray(targets).reshape(-1)
    factor = 2.0 if reduction != "mean" else (2.0 / y.size if y.size else 0.0)
    keep = reduction == "none"
    per_item = np.empty(y.size if keep else 0, y.dtype)
    dy = np.empty_like(y)
    total = _mse_kernel(y, t, factor, keep, per_item, dy)
    per_item = per_item.reshape(input.shape) if keep else None
    out = _total(total, per_item, reduction, y.size, y.dtype)
    return out, {"dinput": dy.reshape(input.shape)}


def _total(total, per_item, reduction, count, dtype):
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return np.asarray(total, dtype)
    return np.asarray(total / count if count else np.nan, dtype)


# ----------------------------------------------------------------------------- bias + activation
# act(z + b) over an (N, C) block in one sweep: one read of z, one write of out, where NumPy's
# reference makes two to four temporaries. Backward reads dout and out once, writes dz once and
# sums the bias gradient in the same sweep. Every branch on the activation sits outside the
# loop over a row, so each loop is straight-line arithmetic that LLVM vectorises; tanh and
# sigmoid come from cpu_math.py (vectorised for float32; float64 tanh runs NumPy's SIMD tanh in
# place on the sum instead, float64 sigmoid the reference). GELU and SiLU (derivatives from
# z + b, not from the output) go through the scalar functions of ``cpu_act`` where those beat
# NumPy (exact GELU 5-15x forward and backward, SiLU 2-4x in float64); SiLU in float32 and the
# tanh GELU lost (0.1-1.1x) and run the reference. The codes are gpugrad.activations.CODES;
# Numba reads the module globals below as compile-time constants.

RELU, LEAKY_RELU, TANH, SIGMOID, IDENTITY = (
    CODES["relu"],
    CODES["leaky_relu"],
    CODES["tanh"],
    CODES["sigmoid"],
    CODES["identity"],
)


@njit(cache=True, error_model="numpy")
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
                oi[j] = zero if v < zero else v  # a NaN passes, as in np.maximum(v, 0)
        elif code == LEAKY_RELU:
            for j in range(c):
                v = zi[j] + b[j]
                oi[j] = v if v > zero else v * s
        elif code == TANH:
            for j in range(c):
                oi[j] = tanh(zi[j] + b[j])
        elif code == SIGMOID:
            for j in range(c):
                oi[j] = sigmoid(zi[j] + b[j])
        elif code == IDENTITY:
            for j in range(c):
                oi[j] = zi[j] + b[j]
        else:  # gelu, silu (faster_than_numpy keeps the tanh GELU away)
            for j in range(c):
                oi[j] = act_from_pre(code, zi[j] + b[j])


@njit(cache=True, error_model="numpy")
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
        # multiplications, not selections: a NaN or inf in dout propagates as in the reference
        if code == RELU:
            for j in range(c):
                zi[j] = di[j] * (one if oi[j] > zero else zero)
        elif code == LEAKY_RELU:
            for j in range(c):
                zi[j] = di[j] * (one if oi[j] > zero else s)
        elif code == TANH:
            for j in range(c):
                zi[j] = di[j] * (one - oi[j] * oi[j])
        elif code == SIGMOID:
            for j in range(c):
                zi[j] = di[j] * (oi[j] * (one - oi[j]))
        else:
            for j in range(c):
                zi[j] = di[j]
        for j in range(c):
            acc[j] += zi[j]
    for j in range(c):
        db[j] = acc[j]


@njit(cache=True, error_model="numpy")
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
    """``a`` as C-contiguous rows (itself when it already is one)."""
    if a.ndim == 2 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


@fused.bias_act.fast("cpu", kernels=("_bias_act_fwd_kernel", "numpy tanh"))
def bias_act(xp, z, b, *, activation="relu", negative_slope=0.01):
    code = activations.check(activation, negative_slope)
    dt = z.dtype
    # float32/float64 of one dtype with at least one element in a row: what the loops cover
    # (an (N, 0) block has no rows to reshape)
    if dt not in _FLOATS or b.dtype != dt or z.ndim == 0 or z.size == 0 or b.shape != z.shape[-1:]:
        return NotImplemented
    if activation in activations.FROM_INPUT and not faster_than_numpy(code, dt):
        return NotImplemented
    if dt == np.float64 and code in (TANH, SIGMOID):
        if code == SIGMOID:
            return NotImplemented
        out = np.add(z, b)  # NumPy's SIMD tanh, in place on the sum (no second temporary)
        return np.tanh(out, out=out)
    z2 = _rows(z)
    out = np.empty(z2.shape, dt)
    _bias_act_fwd_kernel(z2, b if b.flags.c_contiguous else np.ascontiguousarray(b), code,
                         negative_slope, out)  # fmt: skip
    return out if z2 is z else out.reshape(z.shape)


@fused.bias_act.fast_backward(
    "cpu", owns=True, kernels=("_bias_act_bwd_kernel", "_bias_act_bwd_pre_kernel")
)
def bias_act_backward(xp, dout, out, activation, negative_slope, needs, z=None, b=None):
    """(dz, db) in one sweep; the identity (dz is dout itself) is left to the reference."""
    dt = out.dtype
    usable = dt in _FLOATS and out.ndim > 0 and out.size > 0 and dout.shape == out.shape
    if activation == "identity" or not usable:
        return NotImplemented
    code = CODES[activation]
    pre = activation in activations.FROM_INPUT
    if pre and not (
        z is not None
        and z.dtype == dt
        and b.dtype == dt
        and z.shape == out.shape
        and faster_than_numpy(code, dt)
    ):
        return NotImplemented
    d2 = _rows(dout if dout.dtype == dt else dout.astype(dt))
    dz = np.empty(d2.shape, dt)
    db = np.empty(d2.shape[1], dt)
    if pre:
        _bias_act_bwd_pre_kernel(d2, _rows(z), np.ascontiguousarray(b), code, dz, db)
    else:
        _bias_act_bwd_kernel(d2, _rows(out), code, negative_slope, dz, db)
    dz = (dz if d2 is dout else dz.reshape(out.shape)) if needs[0] else None
    return dz, (db if needs[1] else None)
