"""The tape engine: nodes, reverse-mode backward, and grad mode.

Every differentiable op call records one ``Node``: the op, its parents (the nodes that made its
inputs, or the leaf tensors themselves), what the op saved for backward, and a sequence number.
There is no global tape: a node lives exactly as long as some tensor refers to it, and nothing
refers back from a node to the tensor it produced, so a graph nobody holds is freed by reference
counting alone (no cycles for Python's cyclic GC to chase).

``backward`` walks the reachable nodes in decreasing sequence number. A node's inputs were made
before it, so that order is a valid reverse topological order, found with a heap instead of a
recursive DFS: a 100,000-op chain needs no recursion at all.
"""

from __future__ import annotations

import functools
import heapq
import itertools

import numpy as np

from . import state
from .anomaly import check_grads
from .device import out_of_memory

_FREED = object()  # marks a node whose saved buffers were released by backward()
_seq = itertools.count()


def is_grad_enabled() -> bool:
    return state.grad_mode.enabled


class _SetGrad:
    """Context manager and decorator that sets grad mode (the base of no_grad/enable_grad)."""

    mode = True

    def __enter__(self):
        self._prev = state.grad_mode.enabled
        state.grad_mode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        state.grad_mode.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_SetGrad):
    """Record nothing inside: ``with gg.no_grad(): ...`` or ``@gg.no_grad()``."""

    mode = False


class enable_grad(_SetGrad):
    """Record again inside a ``no_grad`` block."""

    mode = True


class Node:
    """One recorded op application.

    parents[i] is the Node that produced input i, the leaf Tensor itself when input i is a leaf
    that requires grad, or None when input i needs no gradient.
    """

    __slots__ = (
        "op",
        "parents",
        "saved",
        "versions",
        "in_shapes",
        "in_dtypes",
        "seq",
        "shape",
        "dtype",
        "xp",
        "where",
        "__weakref__",
    )

    def __init__(self, op, parents, saved, versions, in_shapes, in_dtypes, shape, dtype, xp):
        self.op = op
        self.parents = parents
        self.saved = saved
        self.versions = versions  # ((counter, expected, "out" | input index), ...)
        self.in_shapes = in_shapes
        self.in_dtypes = in_dtypes
        self.shape = shape
        self.dtype = dtype
        self.xp = xp
        self.seq = next(_seq)
        self.where = None  # file:line of the user code that made it (anomaly mode)

    @property
    def name(self) -> str:
        return self.op.name

    def __repr__(self) -> str:
        return f"<Node {self.op.name} #{self.seq} shape={self.shape}>"


def unbroadcast(xp, grad, shape):
    """Sum a gradient over the dimensions that broadcasting added or stretched."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _check_versions(node):
    for counter, expected, which in node.versions:
        if counter[0] != expected:
            label = (
                f"the output {node.shape}"
                if which == "out"
                else f"input {which} {node.in_shapes[which]}"
            )
            raise RuntimeError(
                f"one of the tensors needed for the gradient of '{node.op.name}' was modified "
                f"in place: {label} is at version {counter[0]}, expected version {expected}. "
                "Make an out-of-place copy (x = x + y instead of x += y) before the change."
            )


def run_backward(root, gradient, retain_graph: bool) -> None:
    """Accumulate d(root)/d(leaf) * gradient into every reachable leaf's ``.grad``.

    A gradient becomes a leaf's ``.grad`` without a copy only when the backward that made it
    declared it freshly allocated (``owns`` on the op or fast path) and no other leaf received
    the same array; anything else (a view of ``dout``, a saved value) is copied first, so an
    optimizer's in-place update of ``.grad`` can never reach memory that something else holds.
    """
    delivered = set()  # ids of arrays already handed to a leaf: a second hand-off must copy

    def accumulate(leaf, g, owned):
        if leaf._grad is None:
            if not owned or id(g) in delivered:
                g = g.copy()
            delivered.add(id(g))
            leaf._grad = type(leaf)._wrap(g, leaf.device)
        else:
            leaf._grad = type(leaf)._wrap(leaf._grad.data + g, leaf.device)

    node = root._node
    if node is None:  # backward on a leaf: its gradient is the seed itself (a fresh array)
        accumulate(root, gradient, True)
        return
    # IEEE results (inf, nan) are the answer, not a reason to warn: as in PyTorch and CuPy,
    # NumPy's floating-point warnings stay off; gg.detect_anomaly() is the tool to find them.
    with np.errstate(all="ignore"):
        try:
            _walk(node, gradient, retain_graph, accumulate, state.anomaly.enabled)
        except MemoryError as e:
            out_of_memory(e, f"backward on {root.device}")


def _walk(node, gradient, retain_graph, accumulate, anomaly=False):
    grads = {node: gradient}
    heap = [(-node.seq, node)]
    while heap:
        _, node = heapq.heappop(heap)
        dout = grads.pop(node)
        if node.saved is _FREED:
            raise RuntimeError(
                f"trying to backward through the graph a second time: the buffers saved by "
                f"'{node.op.name}' were already freed. Pass retain_graph=True to the first "
                "backward() call if you need to backward through the graph again."
            )
        if node.versions:
            _check_versions(node)
        in_grads, owns = node.op.run_backward(node.xp, dout, node.saved)
        dout = None
        if not retain_graph:
            node.saved = _FREED
        # Anomaly mode checks gradients when backward runs inside it, or when the node was
        # made inside it (it recorded where).
        if anomaly or node.where is not None:
            check_grads(node, in_grads)
        last = len(owns) - 1
        for i, (parent, g, shape, dtype) in enumerate(
            zip(node.parents, in_grads, node.in_shapes, node.in_dtypes, strict=False)
        ):
            if parent is None or g is None:
                continue
            owned = owns[i if i < last else last]
            if g.shape != shape:
                g = unbroadcast(node.xp, g, shape)
                owned = True  # a sum over the broadcast dims: a new array
            if g.dtype is not dtype and g.dtype != dtype:
                g = g.astype(dtype)
                owned = True
            if isinstance(parent, Node):
                if parent in grads:
                    grads[parent] = grads[parent] + g
                else:
                    grads[parent] = g
                    heapq.heappush(heap, (-parent.seq, parent))
            else:
                accumulate(parent, g, owned)
