"""CPU fast paths: Numba-compiled single passes for the fused losses.

Each public function here has exactly the signature and results of its reference forward in
``fused.py`` (which stays the tested reference); ``dispatch.Op.impl`` picks it on the CPU when
``gg.config.kernels`` is on. The NumPy composition of a fused loss walks the (N, C) logits 6-10
times and allocates as many temporaries; the loops below read the logits twice per row and write
the gradient once. Sums accumulate in float64 whatever the input dtype.

The ``_kernel`` functions are plain Python under ``NUMBA_DISABLE_JIT=1``, so a debugger can step
through them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _softmax_xent_kernel(logits, targets, ignore_index, scale, per_row, dlogits):
    n, c = logits.shape
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
            per_row[i] = 0.0
            for j in range(c):
                dlogits[i, j] = 0.0
            continue
        per_row[i] = math.log(s) - (row[t] - m)
        inv = scale / s
        for j in range(c):
            dlogits[i, j] *= inv
        dlogits[i, t] -= scale


def cross_entropy(xp, logits, targets, *, reduction="mean", ignore_index=-100):
    logits = np.ascontiguousarray(logits)
    targets = np.ascontiguousarray(targets)
    count = int(np.count_nonzero(targets != ignore_index))
    scale = 1.0 if reduction != "mean" else (1.0 / count if count else 0.0)
    per_row = np.empty(logits.shape[0], np.float64)
    dlogits = np.empty_like(logits)
    _softmax_xent_kernel(logits, targets, ignore_index, scale, per_row, dlogits)
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


def binary_cross_entropy_with_logits(xp, logits, targets, *, reduction="mean"):
    s = np.ascontiguousarray(logits).reshape(-1)
    t = np.ascontiguousarray(targets).reshape(-1)
    scale = 1.0 if reduction != "mean" else (1.0 / s.size if s.size else 0.0)
    per_item = np.empty(s.size, s.dtype)
    ds = np.empty_like(s)
    total = _bce_logits_kernel(s, t, scale, per_item, ds)
    out = _total(total, per_item.reshape(logits.shape), reduction, s.size, logits.dtype)
    return out, {"dlogits": ds.reshape(logits.shape), "scale": scale}


@njit(cache=True)
def _mse_kernel(y, t, factor, per_item, dy):
    total = 0.0
    for i in range(y.size):
        d = y[i] - t[i]
        per_item[i] = d * d
        total += d * d
        dy[i] = d * factor
    return total


def mse_loss(xp, input, targets, *, reduction="mean"):
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
