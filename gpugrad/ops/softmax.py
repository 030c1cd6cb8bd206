"""softmax and log_softmax along an axis, both max-shifted so any logit size is finite.

An empty input (any zero-size dimension) gives an empty result of its shape: there is no row
to normalise, and the max of an empty axis has no value.
"""

from __future__ import annotations

from ..dispatch import op


@op("softmax", saves=("out", "axis"), owns=True)
def softmax(xp, x, *, axis=-1):
    if x.size == 0:
        return xp.empty_like(x)
    z = xp.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


@softmax.backward
def softmax_backward(xp, dout, out, axis):
    return (out * (dout - (dout * out).sum(axis=axis, keepdims=True)),)


@op("log_softmax", saves=("out", "axis"), owns=True)
def log_softmax(xp, x, *, axis=-1):
    if x.size == 0:
        return xp.empty_like(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


@log_softmax.backward
def log_softmax_backward(xp, dout, out, axis):
    return (dout - xp.exp(out) * dout.sum(axis=axis, keepdims=True),)
