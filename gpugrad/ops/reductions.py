"""Reductions: sum, mean, max, min, var over ``axis`` (None, an int or a tuple), ``keepdims``.

A 0-d tensor reduces over axis 0 or -1 as over None (its one element), as in PyTorch; NumPy
accepts that for sum/max/min but not for mean/var, so the forwards pass None to the array
library and the backwards read the same ``_norm_axis``.
"""

from __future__ import annotations

from ..dispatch import op


def _norm_axis(axis, ndim):
    """The reduced axes as a sorted tuple of non-negative ints (() for a 0-d input)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if ndim == 0:
        return ()
    return tuple(sorted(a % ndim for a in axes))


def _array_axis(name, x, axis):
    """``axis`` for the array library; a 0-d input takes only 0 and -1 (meaning None)."""
    if x.ndim == 0 and axis is not None:
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        bad = [a for a in axes if a not in (0, -1)]
        if bad:
            raise ValueError(
                f"{name}: axis {bad[0]} is out of range for a 0-d tensor (0 and -1 reduce its "
                "one element, as in PyTorch)"
            )
        return None
    return axis


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
    axis = _array_axis("sum", x, axis)
    if x.dtype == xp.float16:  # accumulate in float32: a float16 running sum stalls at 2048
        return xp.sum(x, axis=axis, keepdims=keepdims, dtype=xp.float32).astype(x.dtype)
    return xp.sum(x, axis=axis, keepdims=keepdims)


@sum.backward
def sum_backward(xp, dout, shape, axis, keepdims):
    return (xp.broadcast_to(_restore(xp, dout, shape, axis, keepdims), shape),)


@op("mean", saves=("x_shape", "axis", "keepdims"))
def mean(xp, x, *, axis=None, keepdims=False):
    axis = _array_axis("mean", x, axis)
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
    axis = _array_axis("max", x, axis)
    return xp.max(x, axis=axis, keepdims=keepdims)


max.backward(_extreme_backward)


@op("min", saves=("x", "out", "axis", "keepdims"), owns=True)
def min(xp, x, *, axis=None, keepdims=False):
    axis = _array_axis("min", x, axis)
    return xp.min(x, axis=axis, keepdims=keepdims)


min.backward(_extreme_backward)


@op("var", saves=("x", "axis", "keepdims", "ddof"), owns=True)
def var(xp, x, *, axis=None, keepdims=False, ddof=0):
    axis = _array_axis("var", x, axis)
    if x.dtype == xp.float16:  # squared deviations overflow float16 long before the variance
        out = xp.var(x.astype(xp.float32), axis=axis, keepdims=keepdims, ddof=ddof)
        return out.astype(x.dtype)
    return xp.var(x, axis=axis, keepdims=keepdims, ddof=ddof)


@var.backward
def var_backward(xp, dout, x, axis, keepdims, ddof):
    centered = x - x.mean(axis=_array_axis("var", x, axis), keepdims=True)
    n = _count(x.shape, axis)
    return (_restore(xp, dout, x.shape, axis, keepdims) * centered * (2 / (n - ddof)),)
