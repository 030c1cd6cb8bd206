"""The tensor methods that forward to an op of the table: ``x.exp()``, ``x.sum(axis=1)``, ...

``Tensor`` inherits them from ``TensorMethods``, which holds no state of its own; they are
kept here so ``tensor.py`` stays about conversion, operators and in-place bookkeeping.
"""

from __future__ import annotations

from . import ops
from .dispatch import apply


class TensorMethods:
    """Methods of ``Tensor`` that apply one op of the table to the tensor."""

    __slots__ = ()

    def exp(self):
        return apply(ops.exp, (self,), {})

    def log(self):
        return apply(ops.log, (self,), {})

    def sqrt(self):
        return apply(ops.sqrt, (self,), {})

    def abs(self):
        return apply(ops.abs, (self,), {})

    __abs__ = abs

    def tanh(self):
        return apply(ops.tanh, (self,), {})

    def sigmoid(self):
        return apply(ops.sigmoid, (self,), {})

    def relu(self):
        return apply(ops.relu, (self,), {})

    def leaky_relu(self, negative_slope: float = 0.01):
        return apply(ops.leaky_relu, (self,), {"negative_slope": negative_slope})

    def clip(self, min=None, max=None):
        return apply(ops.clip, (self,), {"min": min, "max": max})

    clamp = clip

    def sum(self, axis=None, keepdims=False):
        return apply(ops.sum, (self,), {"axis": axis, "keepdims": keepdims})

    def mean(self, axis=None, keepdims=False):
        return apply(ops.mean, (self,), {"axis": axis, "keepdims": keepdims})

    def max(self, axis=None, keepdims=False):
        return apply(ops.max, (self,), {"axis": axis, "keepdims": keepdims})

    def min(self, axis=None, keepdims=False):
        return apply(ops.min, (self,), {"axis": axis, "keepdims": keepdims})

    def var(self, axis=None, keepdims=False, ddof=0):
        return apply(ops.var, (self,), {"axis": axis, "keepdims": keepdims, "ddof": ddof})

    def argmax(self, axis=None):
        return type(self)._wrap(self._xp.argmax(self.data, axis=axis), self.device)

    def argmin(self, axis=None):
        return type(self)._wrap(self._xp.argmin(self.data, axis=axis), self.device)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return apply(ops.reshape, (self,), {"shape": tuple(shape)})

    def flatten(self):
        return self.reshape(-1)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes
        return apply(ops.transpose, (self,), {"axes": tuple(axes) if axes else None})

    @property
    def T(self):
        return self.transpose()

    def broadcast_to(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return apply(ops.broadcast_to, (self,), {"shape": tuple(shape)})

    def expand_dims(self, axis):
        return apply(ops.expand_dims, (self,), {"axis": axis})

    def squeeze(self, axis=None):
        return apply(ops.squeeze, (self,), {"axis": axis})
