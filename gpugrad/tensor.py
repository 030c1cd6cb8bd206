"""Tensor: an array (NumPy on the CPU, CuPy on a GPU) plus what autograd needs.

Every operator forwards to an entry of the op table (``ops.py``); this module only converts
operands and keeps the bookkeeping: the node that made the tensor, the gradient, and a version
counter that in-place changes bump so backward can refuse stale saved values.
"""

from __future__ import annotations

import numpy as np

from . import aliases, engine, graph, ops, state
from .aliases import ElementCount
from .device import device_of, move, parse_device, xp_for
from .dispatch import apply
from .tensor_methods import TensorMethods

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")


def _is_float(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def _to_array(data, dtype, device):
    """Convert user data to an array on ``device`` following gpugrad's dtype rules."""
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray | np.generic):
        arr = data
    elif type(data).__module__.startswith("cupy"):
        arr = data  # a CuPy array: stays on its GPU unless a device is given
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)  # Python floats default to float32, as in PyTorch
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    elif arr.dtype.kind == "O":
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} data")
    return arr if device is None else move(arr, device)


class Tensor(TensorMethods):
    """An n-dimensional array that records the ops applied to it for reverse-mode autodiff."""

    __slots__ = (
        "data",
        "device",
        "_requires_grad",
        "_grad",
        "_node",
        "_version",
        "_view_version",  # a view's version when its graph last matched its memory, else None
        "__weakref__",
    )

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        # device=None: where the data already is (a CuPy array's GPU), else the CPU
        self.data = _to_array(data, dtype, None if device is None else parse_device(device))
        self.device = device_of(self.data)
        self._grad = None
        self._node = None
        self._version = [0]
        self._view_version = None
        self._requires_grad = False
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, array, device, requires_grad=False):
        """Wrap an array already on ``device`` without any conversion (the hot path)."""
        t = object.__new__(cls)
        t.data = array
        t.device = device
        t._requires_grad = requires_grad
        t._grad = None
        t._node = None
        t._version = [0]
        t._view_version = None
        return t

    # ------------------------------------------------------------------ attributes
    @property
    def _xp(self):
        return np if self.device == "cpu" else xp_for(self.device)

    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: ElementCount(self.data.size))  # x.size(0) says: x.shape[0]
    dtype = property(lambda self: self.data.dtype)
    is_leaf = property(lambda self: self._node is None)
    grad_fn = property(lambda self: self._node)

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not _is_float(self.dtype):
            raise RuntimeError(
                f"only floating point tensors can require gradients, got dtype {self.dtype}; "
                "convert with .to(gg.float32) first"
            )
        if not value and self._node is not None:
            raise RuntimeError("requires_grad can only be cleared on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is not None:
            value = value if isinstance(value, Tensor) else Tensor(value, device=self.device)
            if value.shape != self.shape or value.device != self.device:
                raise ValueError(
                    f"grad: assigned gradient of shape {value.shape} on {value.device} does not "
                    f"match the tensor's shape {self.shape} on {self.device}"
                )
        self._grad = value

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (shares memory on the CPU, copies from a GPU)."""
        return self.data if self.device == "cpu" else move(self.data, "cpu")

    def detach(self) -> Tensor:
        """The same data, cut off from the graph (shares memory and version counter)."""
        t = Tensor._wrap(self.data, self.device)
        t._version = self._version
        return t

    def clone(self) -> Tensor:
        """A copy in new memory that stays in the graph (its gradient flows back to self)."""
        if self._requires_grad and state.grad_mode.enabled:
            return apply(ops.cast, (self,), {"dtype": self.dtype})
        return Tensor._wrap(self.data.copy(), self.device)

    copy = clone

    def to(self, target=None, dtype=None, *, device=None) -> Tensor:
        """Move to a device (``"cpu"``, ``"cuda"``, ``"cuda:1"``) and/or convert the dtype
        (``gg.float64`` or ``"float64"``); ``x.to(other)`` takes other's device and dtype."""
        if isinstance(target, Tensor):
            target, dtype = target.device, target.dtype if dtype is None else dtype
        device, dtype = aliases.to_arguments("to", target, dtype, device)
        out = self
        if device is not None:
            device = parse_device(device)
            if device != self.device:
                out = apply(ops.to_device, (self,), {"device": device, "source": self.device})
        if dtype is not None and dtype != out.dtype:
            if out.requires_grad and _is_float(dtype):
                out = apply(ops.cast, (out,), {"dtype": np.dtype(dtype)})
            else:
                out = Tensor._wrap(out.data.astype(dtype), out.device)
        return out

    def __array__(self, dtype=None, copy=None):
        if self.device != "cpu":
            raise TypeError(
                f"a tensor on {self.device} cannot be converted to a NumPy array implicitly; "
                "call .numpy() to copy it to the host"
            )
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", threshold=200)
        extra = f"dtype={self.dtype}, device={self.device}"
        if self._node is not None:
            extra += f", grad_fn=<{self._node.op.name}>"
        elif self._requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}, {extra})"

    __hash__ = object.__hash__  # tensors are dict keys by identity, like PyTorch's (__eq__
    # is elementwise, which would otherwise leave the class unhashable)

    # ------------------------------------------------------------------ autograd
    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that requires grad.

        ``gradient``: d(loss)/d(self) for a non-scalar tensor. ``create_graph=True`` records the
        backward itself, so the gradients can be differentiated again; ``retain_graph`` defaults
        to it. ``inputs``: accumulate only into these tensors' ``.grad`` (leaves or not).
        """
        if not self._requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad and has no graph; set "
                "requires_grad=True on an input before computing it"
            )
        seed = self._seed(gradient, "backward", create_graph)
        if inputs is None:
            graph.run_backward([self], [seed], retain_graph, create_graph)
            return
        inputs = graph.check_inputs("backward", inputs)
        grads = graph.run_backward([self], [seed], retain_graph, create_graph, inputs)
        for t, g in zip(inputs, grads, strict=True):
            if g is None:
                continue
            g = g if isinstance(g, Tensor) else Tensor._wrap(g, t.device)
            t._grad = g if t._grad is None else t._grad + g

    def _seed(self, gradient, what, create_graph):
        """d(root)/d(self): ones for a scalar, else the given gradient (checked); a tensor
        under create_graph (it may itself require grad), else an array."""
        if gradient is None:
            if self.size != 1:
                raise RuntimeError(
                    f"{what}: grad can be implicitly created only for scalar outputs, but this "
                    f"tensor has shape {self.shape}; pass gradient= of that shape or reduce "
                    "it first (e.g. .sum())"
                )
            g = self._xp.ones(self.data.shape, self.dtype)
        elif create_graph and isinstance(gradient, Tensor):
            if gradient.shape != self.shape or gradient.device != self.device:
                raise ValueError(
                    f"{what}: gradient {gradient.shape} on {gradient.device} does not match "
                    f"the tensor {self.shape} on {self.device}"
                )
            return gradient.to(self.dtype)
        else:
            g = _to_array(gradient, self.dtype, self.device).copy()
            if g.shape != self.data.shape:
                raise ValueError(
                    f"{what}: gradient has shape {g.shape} but the tensor has shape {self.shape}"
                )
        return Tensor._wrap(g, self.device) if create_graph else g

    # ------------------------------------------------------------------ operators
    def _operand(self, other) -> Tensor:
        """A non-tensor operand (scalar, NumPy array) joins as a constant of self's dtype."""
        if isinstance(other, Tensor):
            return other
        arr = np.asarray(other) if not hasattr(other, "__cuda_array_interface__") else other
        if _is_float(self.dtype) and arr.dtype.kind in "fiub":
            arr = arr.astype(self.dtype, copy=False)
        elif arr.dtype == np.float64 and not isinstance(other, np.ndarray | np.generic):
            arr = arr.astype(np.float32)
        return Tensor._wrap(move(arr, self.device), self.device)

    def _binary(self, fn, other, reflected=False):
        other = self._operand(other)
        return apply(fn, (other, self) if reflected else (self, other), {})

    def __add__(self, o):
        return self._binary(ops.add, o)

    def __radd__(self, o):
        return self._binary(ops.add, o, True)

    def __sub__(self, o):
        return self._binary(ops.sub, o)

    def __rsub__(self, o):
        return self._binary(ops.sub, o, True)

    def __mul__(self, o):
        return self._binary(ops.mul, o)

    def __rmul__(self, o):
        return self._binary(ops.mul, o, True)

    def __truediv__(self, o):
        return self._binary(ops.div, o)

    def __rtruediv__(self, o):
        return self._binary(ops.div, o, True)

    def __pow__(self, o):
        return self._binary(ops.pow, o)

    def __rpow__(self, o):
        return self._binary(ops.pow, o, True)

    def __matmul__(self, o):
        return self._binary(ops.matmul, o)

    def __rmatmul__(self, o):
        return self._binary(ops.matmul, o, True)

    def __neg__(self):
        return apply(ops.neg, (self,), {})

    def __pos__(self):
        return self

    def _compare(self, other, fn):
        other = self._operand(other)
        return Tensor._wrap(fn(self.data, other.data), self.device)

    def __eq__(self, o):
        return self._compare(o, lambda a, b: a == b)

    def __ne__(self, o):
        return self._compare(o, lambda a, b: a != b)

    def __lt__(self, o):
        return self._compare(o, lambda a, b: a < b)

    def __le__(self, o):
        return self._compare(o, lambda a, b: a <= b)

    def __gt__(self, o):
        return self._compare(o, lambda a, b: a > b)

    def __ge__(self, o):
        return self._compare(o, lambda a, b: a >= b)

    # Logical operators on boolean tensors (masks): values only, never a gradient.
    def _logical(self, other, fn):
        other = self._operand(other)
        return Tensor._wrap(fn(self.data, other.data), self.device)

    def __and__(self, o):
        return self._logical(o, lambda a, b: a & b)

    __rand__ = __and__

    def __or__(self, o):
        return self._logical(o, lambda a, b: a | b)

    __ror__ = __or__

    def __xor__(self, o):
        return self._logical(o, lambda a, b: a ^ b)

    __rxor__ = __xor__

    def __invert__(self):
        return Tensor._wrap(~self.data, self.device)

    def __getitem__(self, index):
        return apply(ops.getitem, (self,), {"index": _index_arrays(index, self.device)})

    # ------------------------------------------------------------------ in-place
    def _assign(self, result: Tensor) -> Tensor:
        """Write ``result`` into self's memory, so views of self see it, and bump the version."""
        if result.shape != self.shape:
            raise ValueError(
                f"in-place op: the result's shape {result.shape} does not match the tensor's "
                f"shape {self.shape}; broadcasting cannot grow a tensor in place"
            )
        if not np.can_cast(result.dtype, self.dtype, "same_kind"):
            raise TypeError(
                f"in-place op: a {result.dtype} result cannot be stored in a {self.dtype} tensor"
            )
        self.data[...] = result.data
        self._version[0] += 1
        if result._node is not None:
            self._node = result._node
            self._requires_grad = True
        if self._view_version is not None:  # this view's graph now describes its memory again
            self._view_version = self._version[0]
        return self

    def _inplace(self, fn, *args, **attrs) -> Tensor:
        recording = state.grad_mode.enabled and (
            self._requires_grad or any(isinstance(a, Tensor) and a._requires_grad for a in args)
        )
        if recording and self._requires_grad and self._node is None:
            raise RuntimeError(
                f"{fn.name}: a leaf tensor that requires grad {self.shape} cannot be changed in "
                "place while recording; do it under gg.no_grad() (as optimizers do) or use an "
                "out-of-place op"
            )
        if recording and self._node is not None and self._node.op.view:
            # Writing through a view changes its base too, but the base's graph would not
            # know: its backward would return a silently wrong gradient. Refuse, as PyTorch
            # does for views of leaves.
            raise RuntimeError(
                f"{fn.name}: in-place change of a view ('{self._node.op.name}' output "
                f"{self.shape}) of a tensor in the graph is not supported; the base's gradient "
                "would miss it. Write to the base instead (base[index] = value records the change)"
            )
        if recording:
            # The op must not save self's memory, which is about to be overwritten: record it
            # on a snapshot that continues self's graph.
            snap = Tensor._wrap(self.data.copy(), self.device, self._requires_grad)
            snap._node = self._node
            operands = [snap] + [self._operand(a) for a in args]
            return self._assign(apply(fn, tuple(operands), attrs))
        with engine.no_grad():
            operands = [self] + [self._operand(a) for a in args]
            return self._assign(apply(fn, tuple(operands), attrs))

    def __iadd__(self, o):
        return self._inplace(ops.add, o)

    def __isub__(self, o):
        return self._inplace(ops.sub, o)

    def __imul__(self, o):
        return self._inplace(ops.mul, o)

    def __itruediv__(self, o):
        return self._inplace(ops.div, o)

    def __setitem__(self, index, value):
        index = _index_arrays(index, self.device)
        value_grad = isinstance(value, Tensor) and value._requires_grad
        if state.grad_mode.enabled and (self._requires_grad or value_grad):
            self._inplace(ops.setitem, value, index=index)
        else:  # nothing to record: write straight into memory
            self.data[index] = self._operand(value).data
            self._version[0] += 1


def _index_arrays(index, device):
    """Tensors inside an index become arrays; everything else passes through."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return move(np.asarray(index), device)
    return index


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Make a leaf tensor. Python floats become float32; NumPy arrays keep their dtype.

    ``device`` is "cpu", "cuda", "cuda:N" or "auto"; None keeps data where it is (the CPU for
    Python and NumPy data, its GPU for a CuPy array).

    >>> tensor([1.0, 2.0]).dtype
    dtype('float32')
    """
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


for _torch_name, _ours in aliases.TENSOR_METHODS.items():  # x.view is x.reshape, ...
    setattr(Tensor, _torch_name, getattr(Tensor, _ours))
