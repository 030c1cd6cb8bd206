"""Arithmetic ops: add, sub, mul, div, neg, pow, matmul, and linear (x @ W.T as one node)."""

from __future__ import annotations

from ..dispatch import op


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
    when y was not saved (only its partner's gradient was wanted) or is a recorded tensor
    (create_graph: the layout does not matter there)."""
    flags = getattr(y, "flags", None)
    return flags is not None and flags.f_contiguous and not flags.c_contiguous


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
