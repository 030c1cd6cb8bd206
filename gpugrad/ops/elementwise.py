"""Elementwise ops: exp, log, sqrt, abs, erf, the activations, maximum/minimum, where, clip,
cast.

Kinks follow PyTorch: relu'(0) = 0, abs'(0) = 0, leaky_relu'(0) = negative_slope, clip passes the
gradient at its bounds, maximum/minimum split it evenly between ties. At exact zeros IEEE
results stand (log(0) = -inf, sqrt'(0) = inf).
"""

from __future__ import annotations

import math

from .. import activations
from ..dispatch import op


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


@op("erf", saves=("x",), owns=True)
def erf(xp, x):
    """The error function, 2/sqrt(pi) * integral of exp(-t^2) from 0 to x (GELU's core)."""
    return activations.erf(xp, x)


@erf.backward
def erf_backward(xp, dout, x):
    return (dout * ((2 / math.sqrt(math.pi)) * xp.exp(-(x * x))),)


def _gelu_kind(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return "gelu" if approximate == "none" else "gelu_tanh"


@op("gelu", saves=("x", "approximate"), owns=True)
def gelu(xp, x, *, approximate="none"):
    """x * Phi(x) (Phi: the standard normal CDF, through erf), or with approximate="tanh"
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); PyTorch's two GELUs."""
    return activations.forward(xp, x, _gelu_kind(approximate))


@gelu.backward
def gelu_backward(xp, dout, x, approximate):
    # GELU is not monotonic (its minimum is near x = -0.75): the derivative needs x, not out.
    return (dout * activations.derivative_from_input(xp, x, _gelu_kind(approximate)),)


@op("silu", saves=("x",), owns=True)
def silu(xp, x):
    """x * sigmoid(x) (also called swish), with the overflow-free sigmoid."""
    return activations.forward(xp, x, "silu")


@silu.backward
def silu_backward(xp, dout, x):
    return (dout * activations.derivative_from_input(xp, x, "silu"),)


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
