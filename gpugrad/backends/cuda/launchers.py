"""CUDA fast paths of the op table: CuPy launchers for the kernels in ``kernels/*.cu``.

Each launcher registers itself on the op it serves (``@ops.relu.fast("cuda")``), takes the
arguments of that op's reference and returns the same results; it returns ``NotImplemented``
for what its kernel does not cover (a dtype other than float32/float64, mixed dtypes, a shape
outside the kernel's contract), and the reference (the op's CuPy composition) runs instead.
Backward launchers receive what the op saved, like the reference backward.
"""

from __future__ import annotations

import math

import numpy as np

from ... import activations, fused, ops
from ...state import config
from .runtime import (
    BLOCK,
    WARP_ROW_MAX,
    _cp,
    contiguous,
    grid_1d,
    kernel_takes,
    launch,
    scalar,
    sm_count,
)

# ----------------------------------------------------------------------------- activations


def _map1(base, x, *scalars):
    cp = _cp()
    x = contiguous(x)
    out = cp.empty(x.shape, x.dtype)
    if x.size:
        vec = 16 // x.dtype.itemsize
        grid = grid_1d(x.size, vec)
        args = (x, out, *(scalar(x.dtype, s) for s in scalars), np.int64(x.size))
        launch("activations.cu", base, x.dtype, (grid,), (BLOCK,), args)
    return out


def _map2(base, a, b, *scalars):
    cp = _cp()
    a, b = contiguous(a), contiguous(b)
    if a.shape != b.shape:
        a, b = (contiguous(v) for v in cp.broadcast_arrays(a, b))
    out = cp.empty(a.shape, a.dtype)
    if a.size:
        grid = grid_1d(a.size, 16 // a.dtype.itemsize)
        args = (a, b, out, *(scalar(a.dtype, s) for s in scalars), np.int64(a.size))
        launch("activations.cu", base, a.dtype, (grid,), (BLOCK,), args)
    return out


@ops.relu.fast("cuda", kernels=("relu_fwd",))
def relu(xp, x):
    return _map1("relu_fwd", x) if kernel_takes(x) else NotImplemented


@ops.relu.fast_backward("cuda", owns=True, kernels=("relu_bwd",))
def relu_backward(xp, dout, out):
    return (_map2("relu_bwd", dout, out),) if kernel_takes(dout, out) else NotImplemented


@ops.leaky_relu.fast("cuda", kernels=("leaky_relu_fwd",))
def leaky_relu(xp, x, *, negative_slope=0.01):
    if not kernel_takes(x):
        return NotImplemented
    return _map1("leaky_relu_fwd", x, negative_slope)


@ops.leaky_relu.fast_backward("cuda", owns=True, kernels=("leaky_relu_bwd",))
def leaky_relu_backward(xp, dout, x, negative_slope):
    if not kernel_takes(dout, x):
        return NotImplemented
    return (_map2("leaky_relu_bwd", dout, x, negative_slope),)


@ops.sigmoid.fast("cuda", kernels=("sigmoid_fwd",))
def sigmoid(xp, x):
    return _map1("sigmoid_fwd", x) if kernel_takes(x) else NotImplemented


@ops.sigmoid.fast_backward("cuda", owns=True, kernels=("sigmoid_bwd",))
def sigmoid_backward(xp, dout, out):
    return (_map2("sigmoid_bwd", dout, out),) if kernel_takes(dout, out) else NotImplemented


@ops.tanh.fast("cuda", kernels=("tanh_fwd",))
def tanh(xp, x):
    return _map1("tanh_fwd", x) if kernel_takes(x) else NotImplemented


@ops.tanh.fast_backward("cuda", owns=True, kernels=("tanh_bwd",))
def tanh_backward(xp, dout, out):
    return (_map2("tanh_bwd", dout, out),) if kernel_takes(dout, out) else NotImplemented


@ops.erf.fast("cuda", kernels=("erf_fwd",))
def erf(xp, x):
    # CUDA's erf; the reference's cupyx.scipy.special.erf then serves float16 alone
    return _map1("erf_fwd", x) if kernel_takes(x) else NotImplemented


_GELU = {"none": "gelu", "tanh": "gelu_tanh"}  # approximate= -> kernel base name


@ops.gelu.fast("cuda", kernels=("gelu_fwd", "gelu_tanh_fwd"))
def gelu(xp, x, *, approximate="none"):
    if approximate not in _GELU or not kernel_takes(x):  # the reference names a bad mode
        return NotImplemented
    return _map1(f"{_GELU[approximate]}_fwd", x)


@ops.gelu.fast_backward("cuda", owns=True, kernels=("gelu_bwd", "gelu_tanh_bwd"))
def gelu_backward(xp, dout, x, approximate):
    if approximate not in _GELU or not kernel_takes(dout, x):
        return NotImplemented
    return (_map2(f"{_GELU[approximate]}_bwd", dout, x),)


@ops.silu.fast("cuda", kernels=("silu_fwd",))
def silu(xp, x):
    return _map1("silu_fwd", x) if kernel_takes(x) else NotImplemented


@ops.silu.fast_backward("cuda", owns=True, kernels=("silu_bwd",))
def silu_backward(xp, dout, x):
    return (_map2("silu_bwd", dout, x),) if kernel_takes(dout, x) else NotImplemented


# ----------------------------------------------------------------------------- bias + act


@fused.bias_act.fast("cuda", kernels=("bias_act_fwd",))
def bias_act(xp, z, b, *, activation="relu", negative_slope=0.01):
    """act(z + b) for z (..., C) and b (C,) in one pass."""
    code = activations.check(activation, negative_slope)
    if z.ndim == 0 or b.shape != z.shape[-1:] or not kernel_takes(z, b):
        return NotImplemented
    cp = _cp()
    out = cp.empty(z.shape, z.dtype)
    m = z.shape[-1]
    if z.size:
        z2, b = contiguous(z).reshape(-1, m), contiguous(b)
        grid = grid_1d(z2.size, 16 // z2.dtype.itemsize)
        args = (z2, b, out, np.int64(z2.shape[0]), np.int64(m), np.int32(code))
        args += (scalar(z2.dtype, negative_slope),)
        launch("bias_act.cu", "bias_act_fwd", z2.dtype, (grid,), (BLOCK,), args)
    return out


@fused.bias_act.fast_backward("cuda", owns=True, kernels=("bias_act_bwd",))
def bias_act_backward(xp, dout, out, activation, negative_slope, needs, z=None, b=None):
    """(dz, db) in one kernel from the saved output, or for GELU and SiLU from z + b.

    The kernel sums db with atomicAdd, whose order varies run to run; under
    gg.config.deterministic the reference sums with CuPy's fixed-order reduction instead.
    """
    code = activations.check(activation, negative_slope)
    usable = out.ndim > 0 and dout.shape == out.shape and kernel_takes(dout, out)
    pre = activation in activations.FROM_INPUT
    if pre:
        usable = usable and z.shape == out.shape and b.shape == out.shape[-1:]
        usable = usable and kernel_takes(out, z, b)
    if not usable or (config.deterministic and needs[1]):
        return NotImplemented
    cp = _cp()
    m = out.shape[-1]
    dz = cp.empty(out.shape, out.dtype)
    db = cp.zeros(m, out.dtype)  # the kernel accumulates into it with atomics
    if out.size:
        d2, o2 = contiguous(dout).reshape(-1, m), contiguous(out).reshape(-1, m)
        null = np.uint64(0)  # z and b are read only for the activations that need z + b
        z2, b2 = (contiguous(z).reshape(-1, m), contiguous(b)) if pre else (null, null)
        n = o2.shape[0]
        gx = math.ceil(m / 32)
        gy = max(1, min(math.ceil(n / 8), (sm_count() * 16) // gx))
        args = (d2, o2, z2, b2, dz, db, np.int64(n), np.int64(m), np.int32(code))
        args += (scalar(out.dtype, negative_slope),)
        launch("bias_act.cu", "bias_act_bwd", out.dtype, (gx, gy), (32, 8), args)
    return (dz if needs[0] else None), (db if needs[1] else None)


# ----------------------------------------------------------------------------- softmax family


def _rows(base, dtype, n, c, args):
    """Launch a row kernel: a warp per row for narrow rows, a block per row for wide ones."""
    if c <= WARP_ROW_MAX:
        grid = max(1, min(math.ceil(n / (BLOCK // 32)), sm_count() * 32))
        launch("softmax_xent.cu", f"{base}_warp", dtype, (grid,), (BLOCK,), args)
    else:
        grid = max(1, min(n, sm_count() * 16))
        launch("softmax_xent.cu", f"{base}_block", dtype, (grid,), (BLOCK,), args)


def _last_axis(x, axis):
    """x with ``axis`` moved last, contiguous, as (rows, cols), plus a function to undo it."""
    cp = _cp()
    axis = axis % x.ndim
    moved = axis != x.ndim - 1
    xt = contiguous(cp.moveaxis(x, axis, -1) if moved else x)
    shape = xt.shape

    def restore(a):
        a = a.reshape(shape)
        return cp.moveaxis(a, -1, axis) if moved else a

    return xt.reshape(-1, shape[-1]), restore


def _softmax_fwd(base, x, axis):
    if x.ndim == 0 or x.size == 0 or not kernel_takes(x):
        return NotImplemented
    x2, restore = _last_axis(x, axis)
    n, c = x2.shape
    out = _cp().empty_like(x2)
    _rows(base, x.dtype, n, c, (x2, np.int64(n), np.int64(c), out))
    return restore(out)


@ops.softmax.fast("cuda", kernels=("softmax_fwd_warp", "softmax_fwd_block"))
def softmax(xp, x, *, axis=-1):
    return _softmax_fwd("softmax_fwd", x, axis)


@ops.log_softmax.fast("cuda", kernels=("log_softmax_fwd_warp", "log_softmax_fwd_block"))
def log_softmax(xp, x, *, axis=-1):
    return _softmax_fwd("log_softmax_fwd", x, axis)


def _softmax_bwd(base, dout, out, axis):
    if out.ndim == 0 or out.size == 0 or dout.shape != out.shape or not kernel_takes(dout, out):
        return NotImplemented
    d2, _ = _last_axis(dout, axis)
    o2, restore = _last_axis(out, axis)
    n, c = o2.shape
    dx = _cp().empty_like(o2)
    _rows(base, out.dtype, n, c, (d2, o2, np.int64(n), np.int64(c), dx))
    return (restore(dx),)


@ops.softmax.fast_backward("cuda", owns=True, kernels=("softmax_bwd_warp", "softmax_bwd_block"))
def softmax_backward(xp, dout, out, axis):
    return _softmax_bwd("softmax_bwd", dout, out, axis)


@ops.log_softmax.fast_backward(
    "cuda", owns=True, kernels=("log_softmax_bwd_warp", "log_softmax_bwd_block")
)
def log_softmax_backward(xp, dout, out, axis):
    return _softmax_bwd("log_softmax_bwd", dout, out, axis)


@fused.cross_entropy.fast("cuda", kernels=("xent_fwd_warp", "xent_fwd_block"))
def cross_entropy(
    xp, logits, targets, *, reduction="mean", ignore_index=-100, weight=None, label_smoothing=0.0
):
    # Class weights and label smoothing: the CuPy reference (the kernel has neither).
    if weight is not None or label_smoothing:
        return NotImplemented
    if logits.ndim != 2 or logits.shape[1] == 0 or not kernel_takes(logits):
        return NotImplemented
    cp = _cp()
    logits = contiguous(logits)
    targets = cp.ascontiguousarray(targets, dtype=cp.int64)
    n, c = logits.shape
    # The number of counted rows stays on the device: the kernel reads it, the host never waits.
    count = cp.count_nonzero(targets != ignore_index).astype(cp.int64).reshape(1)
    per_row = cp.empty(n, logits.dtype)
    dlogits = cp.empty_like(logits)
    if n:
        args = (logits, targets, np.int64(n), np.int64(c), np.int64(ignore_index), count)
        args += (np.int32(reduction == "mean"), per_row, dlogits)
        _rows("xent_fwd", logits.dtype, n, c, args)
    return _reduce(per_row, reduction, count[0]), {"dlogits": dlogits}


def _reduce(per_item, reduction, count):
    if reduction == "none":
        return per_item
    total = per_item.sum(dtype=np.float64)
    if reduction == "sum":
        return total.astype(per_item.dtype)
    return (total / count).astype(per_item.dtype)  # 0 / 0 is NaN, as in the reference


# ----------------------------------------------------------------------------- losses


def _pointwise_loss(base, a, b, reduction, factor):
    """Run bce_logits_fwd / mse_fwd; return (loss, gradient with a's shape)."""
    cp = _cp()
    shape = a.shape
    a, b = contiguous(a).reshape(-1), contiguous(b).reshape(-1)
    n = a.size
    grad = cp.empty_like(a)
    per_item = cp.empty_like(a) if reduction == "none" else None
    grid = grid_1d(n) if n else 1
    partials = cp.zeros(grid, np.float64)
    if n:
        args = (a, b, np.int64(n), scalar(a.dtype, factor))
        args += (per_item if per_item is not None else np.uint64(0), grad, partials)
        launch("losses.cu", base, a.dtype, (grid,), (BLOCK,), args)
    if reduction == "none":
        out = per_item.reshape(shape)
    else:
        total = partials.sum()
        out = total if reduction == "sum" else total / n if n else cp.asarray(np.nan)
        out = out.astype(a.dtype)
    return out, grad.reshape(shape)


@fused.binary_cross_entropy_with_logits.fast("cuda", kernels=("bce_logits_fwd",))
def binary_cross_entropy_with_logits(xp, logits, targets, *, reduction="mean", pos_weight=None,
                                     weight=None):  # fmt: skip
    if pos_weight is not None or weight is not None:  # weighted forms: the CuPy reference
        return NotImplemented
    if logits.shape != targets.shape or not kernel_takes(logits, targets):
        return NotImplemented
    scale = fused._scale(reduction, logits.size)
    out, dlogits = _pointwise_loss("bce_logits_fwd", logits, targets, reduction, scale)
    return out, {"dlogits": dlogits, "dtargets": None, "scale": scale}


@fused.mse_loss.fast("cuda", kernels=("mse_fwd",))
def mse_loss(xp, input, targets, *, reduction="mean"):
    if input.shape != targets.shape or not kernel_takes(input, targets):
        return NotImplemented
    factor = 2 * fused._scale(reduction, input.size)
    out, dinput = _pointwise_loss("mse_fwd", input, targets, reduction, factor)
    return out, {"dinput": dinput}


# ----------------------------------------------------------------------------- matmul


@ops.matmul.fast("cuda", kernels=("matmul_tiled_vec", "matmul_tiled_scalar"))
def matmul(xp, x, y):
    """The tiled kernel when gg.config.matmul == "custom" and both operands are 2-D of one
    float dtype; cupy.matmul (cuBLAS, the reference) otherwise."""
    if (
        config.matmul != "custom"
        or x.ndim != 2
        or y.ndim != 2
        or x.shape[1] != y.shape[0]
        or not kernel_takes(x, y)
    ):
        return NotImplemented
    return matmul_tiled(x, y)


@ops.linear.fast("cuda", kernels=("matmul_tiled_vec", "matmul_tiled_scalar"))
def linear(xp, x, w):
    """x @ w.T through the tiled kernel when gg.config.matmul == "custom" and x is 2-D; cuBLAS
    (and the reference's shape and dtype errors) otherwise."""
    usable = (
        config.matmul == "custom"
        and x.ndim == 2
        and w.ndim == 2
        and x.shape[1] == w.shape[1]
        and kernel_takes(x, w)
    )
    return matmul_tiled(x, w.T) if usable else NotImplemented


def matmul_tiled(a, b, vectorized: bool | None = None):
    """C = A @ B with kernels/matmul.cu; ``vectorized`` None picks float4 loads when allowed."""
    cp = _cp()
    a, b = contiguous(a), contiguous(b)
    m, k = a.shape
    n = b.shape[1]
    if max(m, n, k) >= 2**31:
        raise ValueError(f"matmul_tiled: dimensions {a.shape} @ {b.shape} exceed int32")
    c = cp.empty((m, n), a.dtype)
    if c.size == 0:
        return c
    if k == 0:
        c.fill(0)
        return c
    can_vec = k % 4 == 0 and n % 4 == 0 and (a.data.ptr | b.data.ptr | c.data.ptr) % 16 == 0
    if vectorized and not can_vec:
        raise ValueError(
            f"matmul_tiled: the float4 version needs K and N multiples of 4 and 16-byte aligned "
            f"operands; got {a.shape} @ {b.shape}"
        )
    use_vec = can_vec if vectorized is None else vectorized
    base = "matmul_tiled_vec" if use_vec else "matmul_tiled_scalar"
    # The kernel loops over output tiles, so the grid may be smaller than the tile count;
    # CUDA caps grid.y at 65535 (M >= 4,194,241 rows would exceed it).
    grid = (math.ceil(n / 64), min(math.ceil(m / 64), 65535))
    args = (a, b, c, np.int32(m), np.int32(n), np.int32(k))
    launch("matmul.cu", base, a.dtype, grid, (BLOCK,), args)
    return c
