"""Backward on recorded tensors: what ``create_graph=True`` runs.

Every op's backward rule is written once, against ``xp``. On the array path ``xp`` is NumPy or
CuPy. Here the same rule runs with ``xp`` a ``TensorNamespace``: functions with NumPy's names
(``where``, ``exp``, ``matmul``, ``zeros``, ...) that apply ops of the table to tensors, so
every step of the backward is recorded and its result can be differentiated again. The values
a node saved come back as tensors connected to the graph: the output as a tensor made by the
node itself, an input as the leaf it was or as a tensor made by its producing node.

Fused ops whose forward saved precomputed gradients (the losses) cannot be differentiated
through those arrays; they declare a ``composed`` form (the same function written with other
ops), and their gradient is the gradient of that form, taken on recorded tensors too.
"""

from __future__ import annotations

import numpy as np

from . import ops, state
from .device import move, xp_for
from .engine import Node, Sink, backward_pass, enable_grad


class _Add:
    """``xp.add.at(a, index, b)``: scatter-add b into a at index, in place and recorded."""

    def __init__(self, ns):
        self._ns = ns

    def at(self, a, index, b):
        a._inplace(ops.scatter_add, self._ns._t(b, a), index=index)


class TensorNamespace:
    """NumPy's names for the functions backward rules use, applied to recorded tensors."""

    __name__ = "gpugrad.graph"
    float16, float32, float64 = np.float16, np.float32, np.float64
    bool_, int64 = np.bool_, np.int64

    def __init__(self, device, cls):
        self.device = device
        self.cls = cls
        self.add = _Add(self)
        self._xp = xp_for(device)

    # ------------------------------------------------------------------ conversion
    def _const(self, array):
        return self.cls._wrap(move(array, self.device), self.device)

    def _t(self, v, like=None):
        """A tensor for v: tensors pass; a Python number takes the dtype of ``like``."""
        if isinstance(v, self.cls):
            return v
        if like is not None and isinstance(v, int | float | bool) and like.dtype.kind == "f":
            return self._const(np.asarray(v, like.dtype))
        return self._const(np.asarray(v) if not hasattr(v, "dtype") else v)

    def asarray(self, v, dtype=None):
        out = self._t(v)
        return out if dtype is None or out.dtype == dtype else out.astype(dtype)

    def zeros(self, shape, dtype=np.float64):
        return self._const(self._xp.zeros(shape, dtype))

    def ones(self, shape, dtype=np.float64):
        return self._const(self._xp.ones(shape, dtype))

    def zeros_like(self, a):
        return self.zeros(a.shape, a.dtype)

    def empty_like(self, a):
        return self.zeros(a.shape, a.dtype)

    def arange(self, *args):
        return self._xp.arange(*args)  # an index: stays an array

    # ------------------------------------------------------------------ recorded ops
    def where(self, condition, a, b):
        like = a if isinstance(a, self.cls) else b if isinstance(b, self.cls) else None
        return ops.where(self._t(condition), self._t(a, like), self._t(b, like))

    def maximum(self, a, b):
        like = a if isinstance(a, self.cls) else b
        return ops.maximum(self._t(a, like), self._t(b, like))

    def minimum(self, a, b):
        like = a if isinstance(a, self.cls) else b
        return ops.minimum(self._t(a, like), self._t(b, like))

    def exp(self, a):
        return ops.exp(self._t(a))

    def log(self, a):
        return ops.log(self._t(a))

    def sqrt(self, a):
        return ops.sqrt(self._t(a))

    def tanh(self, a):
        return ops.tanh(self._t(a))

    def abs(self, a):
        return ops.abs(self._t(a))

    def erf(self, a):
        return ops.erf(self._t(a))

    def matmul(self, a, b):
        return ops.matmul(self._t(a), self._t(b))

    def swapaxes(self, a, i, j):
        axes = list(range(a.ndim))
        axes[i], axes[j] = axes[j], axes[i]
        return ops.transpose(a, axes=tuple(axes))

    def expand_dims(self, a, axis):
        return ops.expand_dims(a, axis=axis)

    def broadcast_to(self, a, shape):
        return ops.broadcast_to(a, shape=tuple(shape))

    def take(self, a, i, axis):
        axis = axis % a.ndim
        return a[(slice(None),) * axis + (i,)]

    def sum(self, a, axis=None, keepdims=False):
        return a.sum(axis=axis, keepdims=keepdims)

    # ------------------------------------------------------------------ no gradient
    # Piecewise-constant functions: their derivative is 0 wherever it exists.
    def sign(self, a):
        return self._const(self._xp.sign(a.data))

    def isnan(self, a):
        return self._const(self._xp.isnan(a.data))

    def isfinite(self, a):
        return self._const(self._xp.isfinite(a.data))


class GraphBackward:
    """Runs one node's backward on recorded tensors (``backward_pass(graph=...)``)."""

    def __init__(self, cls):
        self.cls = cls
        self._spaces = {}

    def namespace(self, device) -> TensorNamespace:
        ns = self._spaces.get(device)
        if ns is None:
            ns = self._spaces[device] = TensorNamespace(device, self.cls)
        return ns

    def backward(self, node, dout):
        op = node.op
        if op.composed is not None:
            return self._composed(node, dout)
        saved = [self._rebuild(node, getter, value) for getter, value in
                 zip(op._getters, node.saved, strict=True)]  # fmt: skip
        with enable_grad():
            grads = op.bwd(self.namespace(node.device), dout, *saved)
        return grads, op.owns

    def _rebuild(self, node, getter, value):
        kind, key = getter
        if kind == "out":
            out = self.cls._wrap(value, node.device, True)
            out._node = node  # the node's own output: its gradient flows back through node
            return out
        if kind == "input":
            return None if value is None else self._input(node, key[0], value)
        if kind == "extra" and hasattr(value, "dtype") and hasattr(value, "shape"):
            raise NotImplementedError(
                f"'{node.op.name}' has no double backward: its backward reads arrays its "
                "forward precomputed, and the op declares no composed form to differentiate "
                "instead; call backward() without create_graph=True"
            )
        return value

    def _input(self, node, index, value):
        parent = node.parents[index]
        if parent is None:
            return self.cls._wrap(value, node.device)
        if not isinstance(parent, Node):
            return parent  # the leaf itself, so second-order gradients accumulate on it
        t = self.cls._wrap(value, node.device, True)
        t._node = parent
        return t

    def _composed(self, node, dout):
        """The gradient of the op's composed form, with respect to each input separately."""
        op = node.op
        values = dict(zip(op.saves, node.saved, strict=True))
        inputs = []
        for i, name in enumerate(op.inputs):
            t = self._input(node, i, values[name])
            # A clone per input: its own node, so an input passed twice (mse(y, y)) gets one
            # gradient per position, and the walk stops there (partials, not totals).
            inputs.append(t.clone() if t._requires_grad else t)
        attrs = {k: values[k] for k in op.attr_names if k in values}
        ns = self.namespace(node.device)
        with enable_grad():
            out = op.composed(ns, *inputs, **attrs)
        wanted = [t for t, p in zip(inputs, node.parents, strict=True) if p is not None]
        sink = backward_pass([out], [dout], retain_graph=True, sink=Sink(wanted, cut=True),
                             graph=self)  # fmt: skip
        found = iter(sink.grads)
        return tuple(next(found) if p is not None else None for p in node.parents), (True,)


def check_inputs(what, inputs):
    """The tensors to differentiate with respect to, as a list; each must require grad."""
    single = hasattr(inputs, "_node")
    inputs = [inputs] if single else list(inputs)
    for i, t in enumerate(inputs):
        if not hasattr(t, "_node"):
            raise TypeError(f"{what}: input {i} is a {type(t).__name__}, not a Tensor")
        if not t._requires_grad:
            raise RuntimeError(
                f"{what}: input {i} {t.shape} does not require grad, so it has no gradient; "
                "set requires_grad=True on it before computing the output"
            )
    return inputs


def run_backward(roots, seeds, retain_graph=None, create_graph=False, targets=None):
    """Backward from ``roots`` with ``seeds`` (arrays, or tensors under create_graph).

    Without ``targets`` every reachable leaf's ``.grad`` accumulates; with targets their
    gradients are returned (None where unreached) and no ``.grad`` changes. ``retain_graph``
    defaults to ``create_graph``, as in PyTorch.
    """
    if state.capture is not None:  # gg.cpu_graph is recording this step
        state.capture.backward(roots, seeds, create_graph, targets)
    if retain_graph is None:
        retain_graph = create_graph
    if not create_graph:
        sink = backward_pass(roots, seeds, retain_graph, Sink(targets))
        return sink.grads
    with enable_grad():
        graph = GraphBackward(type(roots[0]))
        sink = backward_pass(roots, seeds, retain_graph, Sink(targets), graph)
    return sink.grads
