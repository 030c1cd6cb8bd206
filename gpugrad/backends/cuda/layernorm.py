"""CUDA fast path of layer_norm: kernels/layernorm.cu, a warp per row for rows up to
``WARP_ROW_MAX`` wide and a block per row beyond, like the softmax family.

Forward writes the output and the per-row mean and rstd in one kernel. Backward runs two:
the row kernel for dx, and a column kernel for the weight and bias gradients that writes one
partial sum per slice of rows, which CuPy then adds in a fixed order: no atomics, so the result
is the same on every run and ``gg.config.deterministic`` needs no other path.
"""

from __future__ import annotations

import math

import numpy as np

from ... import fused
from .runtime import BLOCK, WARP_ROW_MAX, _cp, contiguous, kernel_takes, launch, scalar, sm_count


def _rows(base, dtype, m, d, args):
    if d <= WARP_ROW_MAX:
        grid = max(1, min(math.ceil(m / (BLOCK // 32)), sm_count() * 32))
        launch("layernorm.cu", f"{base}_warp", dtype, (grid,), (BLOCK,), args)
    else:
        grid = max(1, min(m, sm_count() * 16))
        launch("layernorm.cu", f"{base}_block", dtype, (grid,), (BLOCK,), args)


def _as_rows(a, k):
    a = contiguous(a)
    return a.reshape(-1, math.prod(a.shape[a.ndim - k :]))


@fused.layer_norm.fast("cuda", kernels=("layernorm_fwd_warp", "layernorm_fwd_block"))
def layer_norm(xp, x, weight, bias, *, normalized_ndim=1, eps=1e-5):
    if x.size == 0 or not kernel_takes(x, weight, bias):
        return NotImplemented
    cp = _cp()
    x2 = _as_rows(x, normalized_ndim)
    m, d = x2.shape
    out = cp.empty_like(x2)
    mean = cp.empty(m, x.dtype)
    rstd = cp.empty(m, x.dtype)
    w, b = contiguous(weight).reshape(-1), contiguous(bias).reshape(-1)
    args = (x2, w, b, np.int64(m), np.int64(d), scalar(x.dtype, eps), out, mean, rstd)
    _rows("layernorm_fwd", x.dtype, m, d, args)
    stats = x.shape[: x.ndim - normalized_ndim] + (1,) * normalized_ndim  # the reference's
    return out.reshape(x.shape), {"mean": mean.reshape(stats), "rstd": rstd.reshape(stats)}


@fused.layer_norm.fast_backward(
    "cuda",
    owns=True,
    kernels=("layernorm_bwd_warp", "layernorm_bwd_block", "layernorm_param_bwd"),
)
def layer_norm_backward(xp, dout, mean, rstd, x, weight, bias, normalized_ndim, eps, needs):
    if x.size == 0 or dout.shape != x.shape or not kernel_takes(x, dout, mean, rstd, weight):
        return NotImplemented
    cp = _cp()
    x2 = _as_rows(x, normalized_ndim)
    d2 = _as_rows(dout, normalized_ndim)
    m, d = x2.shape
    mean, rstd = contiguous(mean).reshape(-1), contiguous(rstd).reshape(-1)
    dx = dw = db = None
    if needs[0]:
        dx = cp.empty_like(x2)
        w = contiguous(weight).reshape(-1)
        _rows("layernorm_bwd", x.dtype, m, d, (d2, x2, mean, rstd, w, np.int64(m), np.int64(d),
                                               dx))  # fmt: skip
        dx = dx.reshape(x.shape)
    if needs[1] or needs[2]:
        gx = math.ceil(d / 32)
        gy = max(1, min(math.ceil(m / 8), (sm_count() * 16) // gx))
        part_w = cp.empty((gy, d), x.dtype)
        part_b = cp.empty((gy, d), x.dtype)
        args = (d2, x2, mean, rstd, np.int64(m), np.int64(d), part_w, part_b)
        launch("layernorm.cu", "layernorm_param_bwd", x.dtype, (gx, gy), (32, 8), args)
        dw = part_w.sum(axis=0).reshape(weight.shape) if needs[1] else None
        db = part_b.sum(axis=0).reshape(weight.shape) if needs[2] else None
    return dx, dw, db
