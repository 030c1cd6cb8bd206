"""The op table: every primitive and fused op, forward and backward together.

Each forward is written against the array module ``xp`` (NumPy or CuPy) and is the reference
that any device fast path is tested against. Backward gets the incoming gradient ``dout`` and
what the entry declared in ``saves``, and returns one gradient per input. Gradients may keep the
broadcast shape of the output: the engine sums them back to each input's shape.

Conventions at kinks (PyTorch's): relu'(0) = 0, abs'(0) = 0, leaky_relu'(0) = negative_slope,
clip passes the gradient at its bounds, max/min/maximum/minimum split the gradient evenly
between tied elements. At exact zeros IEEE results stand (log(0) = -inf, sqrt'(0) = inf).
"""

from __future__ import annotations

from .device import move
from .dispatch import op
from .state import nondeterministic

# ----------------------------------------------------------------------------- arithmetic


@op("add")
def add(xp, x, y):
    return x + y


@add.backward
def add_backward(xp, dout):
    return dout, dout


@op("sub", owns=(False, True))
def sub(xp, x, y):
    return x - y


@sub.backward
def sub_backward(xp, dout):
    return dout, -dout


@op("mul", saves=("x", "y", "needs_grad"), needed_by={"x": "y", "y": "x"}, owns=True)
def mul(xp, x, y):
    return x * y


@mul.backward
def mul_backward(xp, dout, x, y, needs):
    return (dout * y if needs[0] else None), (dout * x if needs[1] else None)


@op("div", saves=("x", "y", "needs_grad"), owns=True)
def div(xp, x, y):
    return x / y


@div.backward
def div_backward(xp, dout, x, y, needs):
    dx = dout / y if needs[0] else None
    dy = -dout * x / (y * y) if needs[1] else None
    return dx, dy


@op("neg", owns=True)
def neg(xp, x):
    return -x


@neg.backward
def neg_backward(xp, dout):
    return (-dout,)


@op("pow", saves=("x", "y", "out", "needs_grad"), owns=True)
def pow(xp, x, y):
    return x**y


@pow.backward
def pow_backward(xp, dout, x, y, out, needs):
    # PyTorch's conventions: d/dx is 0 where the exponent is 0 (so 0**0 has gradient 0), and
    # d/dy is 0 where x == 0 and y >= 0 (the limit), instead of 0 * log(0) = nan.
    dx = dy = None
    if needs[0]:
        dx = xp.where(y == 0, 0, dout * y * x ** (y - 1)).astype(out.dtype)
    if needs[1]:
        # log(0) = -inf is masked by the where; the engine runs with NumPy's warnings off.
        dy = xp.where((x == 0) & (y >= 0), 0, dout * out * xp.log(x)).astype(out.dtype)
    return dx, dy


@op(
    "matmul",
    saves=("x", "y", "x_shape", "y_shape", "needs_grad"),
    needed_by={"x": "y", "y": "x"},
    owns=True,
)
def matmul(xp, x, y):
    """numpy.matmul semantics: 1-D vectors, 2-D matrices, broadcast batches of N-D stacks."""
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"matmul: {x.shape} @ {y.shape}: both operands need at least 1 dim")
    k1 = x.shape[-1]
    k2 = y.shape[0] if y.ndim == 1 else y.shape[-2]
    if k1 != k2:
        raise ValueError(f"matmul: {x.shape} @ {y.shape}: inner dimensions {k1} and {k2} differ")
    if x.dtype != y.dtype:
        raise TypeError(
            f"matmul: {x.shape} {x.dtype} @ {y.shape} {y.dtype}: dtypes differ; "
            "convert one side with .to(dtype)"
        )
    return xp.matmul(x, y)


@matmul.backward
def matmul_backward(xp, dout, x, y, x_shape, y_shape, needs):
    # Lift 1-D operands to matrices as numpy.matmul does, then drop the lifted axes again.
    # x is None when only x's gradient is wanted (it is not needed then), and y likewise.
    x_1d, y_1d = len(x_shape) == 1, len(y_shape) == 1
    x2 = x[None, :] if x is not None and x_1d else x
    y2 = y[:, None] if y is not None and y_1d else y
    d2 = dout
    if y_1d:
        d2 = xp.expand_dims(d2, -1)
    if x_1d:
        d2 = xp.expand_dims(d2, -2)
    dx = dy = None
    if needs[0]:
        dx = xp.matmul(d2, xp.swapaxes(y2, -1, -2))
        if x_1d:
            dx = dx[..., 0, :]
    if needs[1]:
        if len(y_shape) == 2 and d2.ndim == 2 and _transposed(y):
            # y is a transposed weight (x @ W.T in a Linear): compute dy in the same layout,
            # so the weight's gradient comes back C-contiguous and needs no copy.
            dy = xp.matmul(d2.T, x2).T
        else:
            dy = xp.matmul(xp.swapaxes(x2, -1, -2), d2)
        if y_1d:
            dy = dy[..., 0]
    return dx, dy


def _transposed(y):
    """True for an F-ordered 2-D array that is not also C-ordered (a transposed weight); False
    when y was not saved (only its partner's gradient was wanted)."""
    return y is not None and y.flags.f_contiguous and not y.flags.c_contiguous


@op("linear", saves=("x", "w", "needs_grad"), needed_by={"x": "w", "w": "x"}, owns=True)
def linear(xp, x, w):
    """x @ w.T for x (..., in) and a weight w (out, in): a layer's product as one node.

    One node instead of transpose + matmul, and backward forms dw = dout^T x directly in w's
    (out, in) layout, so the weight gradient is contiguous without a copy.
    """
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear: input {x.shape} and weight {w.shape} do not fit: the weight must be "
            "(out_features, in_features) with in_features == input.shape[-1]"
        )
    if x.dtype != w.dtype:
        raise TypeError(
            f"linear: input {x.dtype} and weight {w.dtype} differ; convert one with .to(dtype)"
        )
    return xp.matmul(x, w.T)


@linear.backward
def linear_backward(xp, dout, x, w, needs):
    dx = xp.matmul(dout, w) if needs[0] else None
    dw = None
    if needs[1]:
        d2 = dout.reshape(-1, dout.shape[-1])
        dw = xp.matmul(d2.T, x.reshape(-1, x.shape[-1]))
    return dx, dw


# ----------------------------------------------------------------------------- elementwise


@op("exp", saves=("out",), owns=True)
def exp(xp, x):
    return xp.exp(x)


@exp.backward
def exp_backward(xp, dout, out):
    return (dout * out,)


@op("log", saves=("x",), owns=True)
def log(xp, x):
    return xp.log(x)


@log.backward
def log_backward(xp, dout, x):
    return (dout / x,)


@op("sqrt", saves=("out",), owns=True)
def sqrt(xp, x):
    return xp.sqrt(x)


@sqrt.backward
def sqrt_backward(xp, dout, out):
    return (dout / (2 * out),)


@op("abs", saves=("x",), owns=True)
def abs(xp, x):
    return xp.abs(x)


@abs.backward
def abs_backward(xp, dout, x):
    return (dout * xp.sign(x),)


@op("tanh", saves=("out",), owns=True)
def tanh(xp, x):
    return xp.tanh(x)


@tanh.backward
def tanh_backward(xp, dout, out):
    return (dout * (1 - out * out),)


@op("sigmoid", saves=("out",), owns=True)
def sigmoid(xp, x):
    # Sign-split form: exp(-|x|) never overflows, so sigmoid(+-1e4) is exactly 1 or 0.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


@sigmoid.backward
def sigmoid_backward(xp, dout, out):
    return (dout * out * (1 - out),)


@op("relu", saves=("out",), owns=True)
def relu(xp, x):
    return xp.maximum(x, 0)


@relu.backward
def relu_backward(xp, dout, out):
    return (dout * (out > 0),)  # relu'(0) = 0, as in PyTorch


@op("leaky_relu", saves=("x", "negative_slope"), owns=True)
def leaky_relu(xp, x, *, negative_slope=0.01):
    return xp.where(x > 0, x, x * negative_slope)


@leaky_relu.backward
def leaky_relu_backward(xp, dout, x, negative_slope):
    return (xp.where(x > 0, dout, dout * negative_slope),)


def _split_ties(xp, dout, pick_x, tie):
    """Gradients of maximum/minimum: the winner gets dout, ties share it evenly."""
    half = dout * 0.5
    dx = xp.where(tie, half, xp.where(pick_x, dout, 0))
    dy = xp.where(tie, half, xp.where(pick_x, 0, dout))
    return dx, dy


@op("maximum", saves=("x", "y"), owns=True)
def maximum(xp, x, y):
    return xp.maximum(x, y)


@maximum.backward
def maximum_backward(xp, dout, x, y):
    return _split_ties(xp, dout, x > y, x == y)


@op("minimum", saves=("x", "y"), owns=True)
def minimum(xp, x, y):
    return xp.minimum(x, y)


@minimum.backward
def minimum_backward(xp, dout, x, y):
    return _split_ties(xp, dout, x < y, x == y)


@op("where", saves=("condition",), differentiable=(False, True, True), owns=True)
def where(xp, condition, x, y):
    return xp.where(condition, x, y)


@where.backward
def where_backward(xp, dout, condition):
    zero = xp.zeros((), dout.dtype)
    return None, xp.where(condition, dout, zero), xp.where(condition, zero, dout)


@op("clip", saves=("x", "min", "max"), owns=True)
def clip(xp, x, *, min=None, max=None):
    if min is not None:
        x = xp.maximum(x, xp.asarray(min, dtype=x.dtype))
    if max is not None:
        x = xp.minimum(x, xp.asarray(max, dtype=x.dtype))
    return x


@clip.backward
def clip_backward(xp, dout, x, min, max):
    keep = xp.ones(x.shape, dtype=bool)  # bounds are inclusive: the gradient passes at them
    if min is not None:
        keep &= x >= min
    if max is not None:
        keep &= x <= max
    return (dout * keep,)


@op("cast", saves=())
def cast(xp, x, *, dtype):
    return x.astype(dtype)


@cast.backward
def cast_backward(xp, dout):
    return (dout,)  # the engine casts the gradient back to the input's dtype


# ----------------------------------------------------------------------------- reductions


def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim if ndim else a for a in axes))


def _restore(xp, dout, shape, axis, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input shape."""
    if not keepdims:
        axes = _norm_axis(axis, len(shape))
        full = list(shape)
        for a in axes:
            full[a] = 1
        dout = dout.reshape(full)
    return dout


def _count(shape, axis):
    n = 1
    for a in _norm_axis(axis, len(shape)):
        n *= shape[a]
    return n


@op("sum", saves=("x_shape", "axis", "keepdims"))
def sum(xp, x, *, axis=None, keepdims=False):
    if x.dtype == xp.float16:  # accumulate in float32: a float16 running sum stalls at 2048
        return xp.sum(x, axis=axis, keepdims=keepdims, dtype=xp.float32).astype(x.dtype)
    return xp.sum(x, axis=axis, keepdims=keepdims)


@sum.backward
def sum_backward(xp, dout, shape, axis, keepdims):
    return (xp.broadcast_to(_restore(xp, dout, shape, axis, keepdims), shape),)


@op("mean", saves=("x_shape", "axis", "keepdims"))
def mean(xp, x, *, axis=None, keepdims=False):
    if x.dtype == xp.float16:  # float32 accumulation on CuPy as on NumPy
        return xp.mean(x, axis=axis, keepdims=keepdims, dtype=xp.float32).astype(x.dtype)
    return xp.mean(x, axis=axis, keepdims=keepdims)


@mean.backward
def mean_backward(xp, dout, shape, axis, keepdims):
    n = _count(shape, axis)
    if n == 0:
        return (xp.zeros(shape, dout.dtype),)
    return (xp.broadcast_to(_restore(xp, dout, shape, axis, keepdims) / n, shape),)


def _extreme_backward(xp, dout, x, out, axis, keepdims):
    """max/min: the gradient goes to every element equal to the result, split evenly
    between ties (torch.amax's rule); a NaN result sends it to the NaN elements."""
    out = _restore(xp, out, x.shape, axis, keepdims)
    hit = (x == out) | (xp.isnan(x) & xp.isnan(out))
    count = hit.sum(axis=_norm_axis(axis, x.ndim), keepdims=True)
    return (hit * (_restore(xp, dout, x.shape, axis, keepdims) / count),)


@op("max", saves=("x", "out", "axis", "keepdims"), owns=True)
def max(xp, x, *, axis=None, keepdims=False):
    return xp.max(x, axis=axis, keepdims=keepdims)


max.backward(_extreme_backward)


@op("min", saves=("x", "out", "axis", "keepdims"), owns=True)
def min(xp, x, *, axis=None, keepdims=False):
    return xp.min(x, axis=axis, keepdims=keepdims)


min.backward(_extreme_backward)


@op("var", saves=("x", "axis", "keepdims", "ddof"), owns=True)
def var(xp, x, *, axis=None, keepdims=False, ddof=0):
    if x.dtype == xp.float16:  # squared deviations overflow float16 long before the variance
        out = xp.var(x.astype(xp.float32), axis=axis, keepdims=keepdims, ddof=ddof)
        return out.astype(x.dtype)
    return xp.var(x, axis=axis, keepdims=keepdims, ddof=ddof)


@var.backward
def var_backward(xp, dout, x, axis, keepdims, ddof):
    centered = x - x.mean(axis=axis, keepdims=True)
    n = _count(x.shape, axis)
    return (_restore(xp, dout, x.shape, axis, keepdims) * centered * (2 / (n - ddof)),)


# ----------------------------------------------------------------------------- shapes


@op("reshape", saves=("x_shape",), view=True)
def reshape(xp, x, *, shape):
    return x.reshape(shape)


@reshape.backward
def reshape_backward(xp, dout, shape):
    return (dout.reshape(shape),)


@op("transpose", saves=("axes",), view=True)
def transpose(xp, x, *, axes=None):
    return x.transpose(axes)


@transpose.backward
def transpose_backward(xp, dout, axes):
    if axes is None:
        return (dout.transpose(),)
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a % len(axes)] = i
    return (dout.transpose(inverse),)


@op("broadcast_to", view=True)
def broadcast_to(xp, x, *, shape):
    return xp.broadcast_to(x, shape)


@broadcast_to.backward
def broadcast_to_backward(xp, dout):
    return (dout,)  # the engine sums the broadcast dims away


@op("expand_dims", saves=("x_shape",), view=True)
def expand_dims(xp, x, *, axis):
    return xp.expand_dims(x, axis)


expand_dims.backward(reshape_backward)


@op("squeeze", saves=("x_shape",), view=True)
def squeeze(xp, x, *, axis=None):
    return xp.squeeze(x, axis)


squeeze.backward(reshape_backward)


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, int | slice) for i in items)


@op("getitem", saves=("x_shape", "index"), view=True, owns=True)
def getitem(xp, x, *, index):
    return x[index]


@getitem.backward
def getitem_backward(xp, dout, shape, index):
    dx = xp.zeros(shape, dout.dtype)
    if _is_basic_index(index):
        dx[index] = dout  # basic indexing never repeats an element
    else:
        if xp.__name__ == "cupy":  # cupy.add.at scatters with atomicAdd
            nondeterministic("getitem's backward with an integer-array index on the GPU")
        xp.add.at(dx, index, dout)  # integer arrays may repeat: scatter-add
    return (dx,)


@op("setitem", saves=("index",), owns=(True, False))
def setitem(xp, x, value, *, index):
    """``x[index] = value`` as a new array (in-place writes record this, then copy back)."""
    out = x.copy()
    out[index] = value
    return out


@setitem.backward
def setitem_backward(xp, dout, index):
    dx = dout.copy()
    dx[index] = 0  # overwritten elements no longer depend on x
    return dx, dout[index]


@op("concatenate", saves=("sizes", "axis"))
def concatenate(xp, *xs, axis=0):
    out = xp.concatenate(xs, axis=axis)
    return out, {"sizes": [x.shape[axis] for x in xs]}


@concatenate.backward
def concatenate_backward(xp, dout, sizes, axis):
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    index = [slice(None)] * dout.ndim
    grads = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        index[axis] = slice(lo, hi)
        grads.append(dout[tuple(index)])
    return tuple(grads)


@op("stack", saves=("count", "axis"), owns=True)
def stack(xp, *xs, axis=0):
    return xp.stack(xs, axis=axis), {"count": len(xs)}


@stack.backward
def stack_backward(xp, dout, count, axis):
    return tuple(xp.take(dout, i, axis=axis) for i in range(count))


@op("to_device", saves=("source",), owns=True)
def to_device(xp, x, *, device, source):
    return move(x, device)


@to_device.backward
def to_device_backward(xp, dout, source):
    return (move(dout, source),)


# ----------------------------------------------------------------------------- softmax family


@op("softmax", saves=("out", "axis"), owns=True)
def softmax(xp, x, *, axis=-1):
    z = xp.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


@softmax.backward
def softmax_backward(xp, dout, out, axis):
    return (out * (dout - (dout * out).sum(axis=axis, keepdims=True)),)


@op("log_softmax", saves=("out", "axis"), owns=True)
def log_softmax(xp, x, *, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


@log_softmax.backward
def log_softmax_backward(xp, dout, out, axis):
    return (dout - xp.exp(out) * dout.sum(axis=axis, keepdims=True),)
