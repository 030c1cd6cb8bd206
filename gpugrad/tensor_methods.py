"""The tensor methods that forward to an op of the table (``x.exp()``, ``x.sum(axis=1)``, ...),
the conveniences PyTorch users reach for (``x.float()``, ``x.numel()``, ``x.t()``, ...), and the
NumPy protocol hooks.

``Tensor`` inherits them from ``TensorMethods``, which holds no state of its own; they are
kept here so ``tensor.py`` stays about conversion, operators and in-place bookkeeping. Every
method that takes ``axis=`` / ``keepdims=`` also takes PyTorch's ``dim=`` / ``keepdim=``
(``aliases.axis_keywords``); renames such as ``x.view`` are installed from ``aliases``.
"""

from __future__ import annotations

import numpy as np

from . import aliases, ops
from .aliases import ValuesIndices, axis_keywords
from .dispatch import apply

# NumPy ufunc -> (Tensor's operator, its reflected form): ``ndarray <op> Tensor`` reaches the
# Tensor through __array_ufunc__ below and runs the recorded op.
_BINARY = {
    "add": ("__add__", "__radd__"),
    "subtract": ("__sub__", "__rsub__"),
    "multiply": ("__mul__", "__rmul__"),
    "divide": ("__truediv__", "__rtruediv__"),
    "true_divide": ("__truediv__", "__rtruediv__"),
    "power": ("__pow__", "__rpow__"),
    "matmul": ("__matmul__", "__rmatmul__"),
    "equal": ("__eq__", "__eq__"),
    "not_equal": ("__ne__", "__ne__"),
    "less": ("__lt__", "__gt__"),
    "less_equal": ("__le__", "__ge__"),
    "greater": ("__gt__", "__lt__"),
    "greater_equal": ("__ge__", "__le__"),
    "bitwise_and": ("__and__", "__rand__"),
    "bitwise_or": ("__or__", "__ror__"),
    "bitwise_xor": ("__xor__", "__rxor__"),
}


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

    @axis_keywords
    def sum(self, axis=None, keepdims=False):
        return apply(ops.sum, (self,), {"axis": axis, "keepdims": keepdims})

    @axis_keywords
    def mean(self, axis=None, keepdims=False):
        return apply(ops.mean, (self,), {"axis": axis, "keepdims": keepdims})

    @axis_keywords
    def max(self, axis=None, keepdims=False, *, torch_spelling=False):
        """The largest values along ``axis`` (NumPy's amax). Under PyTorch's spelling (``dim=``
        or ``keepdim=``) PyTorch's result: ``(values, indices)``."""
        out = apply(ops.max, (self,), {"axis": axis, "keepdims": keepdims})
        if torch_spelling and axis is not None:
            return ValuesIndices(out, self.argmax(axis, keepdims))
        return out

    @axis_keywords
    def min(self, axis=None, keepdims=False, *, torch_spelling=False):
        """The smallest values along ``axis``; under ``dim=``/``keepdim=``: (values, indices)."""
        out = apply(ops.min, (self,), {"axis": axis, "keepdims": keepdims})
        if torch_spelling and axis is not None:
            return ValuesIndices(out, self.argmin(axis, keepdims))
        return out

    @axis_keywords
    def var(self, axis=None, keepdims=False, ddof=None, *, correction=None, unbiased=None,
            torch_spelling=False):  # fmt: skip
        """Variance with ``ddof=0`` (NumPy's default). PyTorch's spellings get PyTorch's
        default: with ``dim=``/``keepdim=`` it is unbiased (``correction=1``); ``correction=``
        and ``unbiased=`` are PyTorch's names for ``ddof``."""
        given = [v for v in (ddof, correction) if v is not None]
        if unbiased is not None:
            given.append(int(bool(unbiased)))
        if len(given) > 1:
            raise TypeError("var: give one of ddof=, correction= and unbiased=")
        ddof = given[0] if given else (1 if torch_spelling else 0)
        return apply(ops.var, (self,), {"axis": axis, "keepdims": keepdims, "ddof": ddof})

    @axis_keywords
    def argmax(self, axis=None, keepdims=False):
        return type(self)._wrap(self._xp.argmax(self.data, axis, keepdims=keepdims), self.device)

    @axis_keywords
    def argmin(self, axis=None, keepdims=False):
        return type(self)._wrap(self._xp.argmin(self.data, axis, keepdims=keepdims), self.device)

    @axis_keywords
    def all(self, axis=None, keepdims=False):
        """True where every element along ``axis`` is nonzero (a bool tensor, no gradient)."""
        return type(self)._wrap(self._xp.all(self.data, axis, keepdims=keepdims), self.device)

    @axis_keywords
    def any(self, axis=None, keepdims=False):
        """True where some element along ``axis`` is nonzero (a bool tensor, no gradient)."""
        return type(self)._wrap(self._xp.any(self.data, axis, keepdims=keepdims), self.device)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return apply(ops.reshape, (self,), {"shape": tuple(shape)})

    def flatten(self, start_dim=0, end_dim=-1):
        """Merge dimensions ``start_dim`` to ``end_dim`` (all by default) into one."""
        if self.ndim == 0:
            return self.reshape(1)
        shape = self.shape
        lo, hi = start_dim % self.ndim, end_dim % self.ndim
        if lo > hi:
            raise ValueError(
                f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a tensor of "
                f"shape {shape}"
            )
        return self.reshape(*shape[:lo], -1, *shape[hi + 1 :])

    def transpose(self, *axes):
        """Permute the dimensions (NumPy's transpose): ``axes`` lists all of them; none
        reverses them."""
        axes = axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes
        if axes and len(axes) != self.ndim:
            a = ", ".join(map(str, axes))
            swap = f"; to swap two as PyTorch's x.transpose({a}) does, write x.swapaxes({a})"
            raise ValueError(
                f"transpose: axes ({a}) must list all {self.ndim} dimensions of a tensor of "
                f"shape {self.shape} (NumPy's permutation)" + (swap if len(axes) == 2 else "")
            )
        return apply(ops.transpose, (self,), {"axes": tuple(axes) if axes else None})

    def swapaxes(self, axis1, axis2):
        """Swap two dimensions (PyTorch's ``x.transpose(a, b)``, ``x.swapdims(a, b)``)."""
        order = list(range(self.ndim))
        order[axis1], order[axis2] = order[axis2], order[axis1]
        return self.transpose(order)

    def t(self):
        """The transpose of a matrix; a tensor of fewer dimensions as it is (PyTorch's t())."""
        if self.ndim > 2:
            raise ValueError(
                f"t() takes a tensor of at most 2 dimensions, got shape {self.shape}; use "
                "x.transpose(*axes) (a full permutation) or x.swapaxes(a, b)"
            )
        return self.transpose() if self.ndim == 2 else self

    @property
    def T(self):
        return self.transpose()

    def broadcast_to(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return apply(ops.broadcast_to, (self,), {"shape": tuple(shape)})

    @axis_keywords
    def expand_dims(self, axis):
        return apply(ops.expand_dims, (self,), {"axis": axis})

    @axis_keywords
    def squeeze(self, axis=None, *, torch_spelling=False):
        """Drop dimensions of length 1 (``axis``: only those; NumPy raises for one of another
        length). Under PyTorch's ``dim=``, such a dimension stays, as in PyTorch."""
        if torch_spelling and axis is not None:
            axes = (axis,) if isinstance(axis, int) else tuple(axis)
            axis = tuple(a for a in axes if self.shape[a] == 1)
            if not axis:
                return self
        return apply(ops.squeeze, (self,), {"axis": axis})

    # ------------------------------------------------------------------ PyTorch conveniences
    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def half(self):
        return self.to(np.float16)

    def long(self):
        return self.to(np.int64)

    def int(self):
        return self.to(np.int32)

    def bool(self):
        return self.to(np.bool_)

    def numel(self) -> int:
        """The number of elements (also ``x.size``, NumPy's spelling)."""
        return int(self.data.size)

    def dim(self) -> int:
        """The number of dimensions (also ``x.ndim``)."""
        return self.data.ndim

    def requires_grad_(self, requires_grad: bool = True):
        """Set ``requires_grad`` in place and return the tensor."""
        self.requires_grad = requires_grad
        return self

    # ------------------------------------------------------------------ conversions, protocols
    def item(self):
        if self.size != 1:
            raise ValueError(f"item: only one-element tensors convert, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def astype(self, dtype):
        """NumPy's spelling of ``.to(dtype)``: the values in another dtype (differentiable)."""
        return self.to(dtype)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index: int = 0):
        return self.to(f"cuda:{index}")

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __dlpack__(self, stream=None, **kwargs):
        """Export the data through DLPack without a copy (NumPy on the CPU, CuPy on a GPU)."""
        if stream is not None:
            kwargs["stream"] = stream
        return self.data.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    @property
    def __cuda_array_interface__(self):
        """CuPy's view of a GPU tensor's memory; CPU tensors have no such attribute."""
        if self.device == "cpu":
            raise AttributeError(
                "__cuda_array_interface__: this tensor is on the cpu; use __array__ or DLPack"
            )
        return self.data.__cuda_array_interface__

    # ------------------------------------------------------------------ NumPy protocol
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        """``ndarray <op> Tensor`` runs the Tensor's op; ``array -= tensor`` (the micrograd and
        PyTorch idiom ``p.data -= lr * p.grad``, ``p.data`` being the raw array here) writes
        the tensor's values into the array, outside autograd as in PyTorch. Other NumPy
        functions on a Tensor raise: they would drop the graph."""
        if method == "__call__" and not kwargs:
            if out is not None and not any(isinstance(o, TensorMethods) for o in out):
                arrays = [x.data if isinstance(x, TensorMethods) else x for x in inputs]
                return ufunc(*arrays, out=out)
            if out is None and len(inputs) == 2 and ufunc.__name__ in _BINARY:
                forward, reflected = _BINARY[ufunc.__name__]
                a, b = inputs
                mine = isinstance(a, TensorMethods)
                return getattr(a, forward)(b) if mine else getattr(b, reflected)(a)
        raise TypeError(
            f"NumPy's {ufunc.__name__} ({method}) cannot take a gpugrad Tensor: it would drop "
            "the graph. Use gpugrad's op (x.exp(), gg.maximum(x, y), ...), or x.numpy() for "
            "the plain values"
        )

    def __getattr__(self, name):
        # Reached only when normal lookup fails: say what PyTorch's name is in gpugrad.
        if name.startswith("_"):  # protocol probes (NumPy, copy, IPython) stay fast
            raise AttributeError(f"'Tensor' object has no attribute {name!r}")
        known = dir(type(self))
        raise aliases.attribute_error("'Tensor' object", name, aliases.TENSOR_HINTS, known)
