"""The tape engine: nodes, reverse-mode backward, and grad mode.

Every differentiable op call records one ``Node``: the op, its parents (the nodes that made its
inputs, or the leaf tensors themselves), what the op saved for backward, and a sequence number.
There is no global tape: a node lives exactly as long as some tensor refers to it, and nothing
refers back from a node to the tensor it produced, so a graph nobody holds is freed by reference
counting alone (no cycles for Python's cyclic GC to chase).

``backward_pass`` walks the reachable nodes in decreasing sequence number. A node's inputs were
made before it, so that order is a valid reverse topological order, found with a heap instead
of a recursive DFS: a 100,000-op chain needs no recursion at all. It runs in one of two modes:

- on arrays (the default): each op's backward runs on NumPy/CuPy arrays, its fast path first;
- on recorded tensors (``create_graph=True``): each op's reference backward runs with a
  namespace of recorded ops in place of ``xp`` (``graph.py``), so the gradients are tensors
  with a graph of their own and can be differentiated again, to any order.
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


class set_grad_enabled(_SetGrad):
    """Turn recording on or off: at once when called (``gg.set_grad_enabled(False)``), back to
    the previous mode at the end of a ``with gg.set_grad_enabled(mode):`` block, or only inside
    a function decorated with ``@gg.set_grad_enabled(mode)`` (PyTorch's three uses)."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = state.grad_mode.enabled
        state.grad_mode.enabled = self.mode

    def __enter__(self):
        return self

    def __call__(self, fn):
        state.grad_mode.enabled = self._prev  # as a decorator it changes nothing until called
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper


class Node:
    """One recorded op application.

    parents[i] is the Node that produced input i, the leaf Tensor itself when input i is a leaf
    that requires grad, or None when input i needs no gradient. ``device`` is where the inputs
    (and so their gradients) live.
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
        "device",
        "where",
        "__weakref__",
    )

    def __init__(
        self, op, parents, saved, versions, in_shapes, in_dtypes, shape, dtype, xp, device
    ):
        self.op = op
        self.parents = parents
        self.saved = saved
        self.versions = versions  # ((counter, expected, "out" | input index), ...)
        self.in_shapes = in_shapes
        self.in_dtypes = in_dtypes
        self.shape = shape
        self.dtype = dtype
        self.xp = xp
        self.device = device
        self.seq = next(_seq)
        self.where = None  # file:line of the user code that made it (anomaly mode)

    @property
    def name(self) -> str:
        return self.op.name

    def __repr__(self) -> str:
        return f"<Node {self.op.name} #{self.seq} shape={self.shape}>"


def unbroadcast(grad, shape):
    """Sum a gradient (an array or a recorded tensor) over the dims broadcasting added."""
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


class Sink:
    """Where gradients go. Without targets, into every reachable leaf's ``.grad``; with
    targets (tensors, leaves or not), into ``grads`` by target position, touching no ``.grad``.

    A gradient becomes a ``.grad`` or a result as it is only when the backward that made it
    declared it freshly allocated (``owns``) and no one else received the same array; anything
    else (a view of ``dout``, a saved value) is copied first, so an in-place update of a
    ``.grad`` (an optimizer's) can never reach memory that something else holds.
    """

    def __init__(self, targets=None, cut=False):
        self.targets = targets
        self.cut = cut  # stop at target nodes: partial derivatives instead of totals
        self.grads = None if targets is None else [None] * len(targets)
        self.delivered = set()
        self.leaf_slots = {}  # id(leaf tensor) -> target positions
        self.node_slots = {}  # node -> target positions
        for i, t in enumerate(targets or ()):
            if t._node is None:
                self.leaf_slots.setdefault(id(t), []).append(i)
            else:
                self.node_slots.setdefault(t._node, []).append(i)

    def _own(self, g, owned):
        if not owned or id(g) in self.delivered:
            g = g.copy()
        self.delivered.add(id(g))
        return g

    def leaf(self, leaf, g, owned):
        if self.targets is None:
            if leaf._grad is None:
                leaf._grad = _as_tensor(leaf, self._own(g, owned))
            else:
                leaf._grad = _as_tensor(leaf, leaf._grad.data + g if _is_array(g) else
                                        leaf._grad + g)  # fmt: skip
            return
        for i in self.leaf_slots.get(id(leaf), ()):
            self._add(i, g, owned)

    def node(self, node, g):
        for i in self.node_slots.get(node, ()):
            self._add(i, g, False)

    def _add(self, i, g, owned):
        self.grads[i] = self._own(g, owned) if self.grads[i] is None else self.grads[i] + g

    def wants(self):
        """(target nodes, ids of target leaves), or None when every leaf is wanted."""
        if self.targets is None:
            return None
        return set(self.node_slots), set(self.leaf_slots)


def _is_array(g) -> bool:
    return not hasattr(g, "_node")


def _as_tensor(like, g):
    """A gradient as a tensor of the leaf's class (graph mode hands tensors already)."""
    return type(like)._wrap(g, like.device) if _is_array(g) else g


def _useful(starts, wanted):
    """The nodes whose backward leads to a target (the only ones worth running), and the
    nodes worth visiting (those plus the target nodes themselves)."""
    target_nodes, target_leaves = wanted
    leads = {}
    stack = [(node, False) for node in starts]
    while stack:
        node, done = stack.pop()
        if done:
            leads[node] = any(
                (p in target_nodes or leads.get(p, False))
                if isinstance(p, Node)
                else id(p) in target_leaves
                for p in node.parents
                if p is not None
            )
            continue
        if node in leads:
            continue
        leads[node] = False  # visited; decided once its parents are
        stack.append((node, True))
        stack.extend((p, False) for p in node.parents if isinstance(p, Node) and p not in leads)
    runs = {node for node, ok in leads.items() if ok}
    return runs, runs | target_nodes


def backward_pass(roots, seeds, retain_graph=False, sink=None, graph=None) -> Sink:
    """Propagate ``seeds`` (d out / d root, one per root) back through the graph into ``sink``.

    ``graph`` is None for the array mode, or a ``graph.GraphBackward`` for create_graph mode
    (seeds are tensors then). Returns the sink.
    """
    sink = sink or Sink()
    starts = []
    for root, seed in zip(roots, seeds, strict=True):
        if root._node is None:  # a leaf: its gradient is the seed itself (a fresh array)
            if root._requires_grad:
                sink.leaf(root, seed, True)
        else:
            starts.append((root._node, seed))
    if not starts:
        return sink
    wanted = sink.wants()
    useful = None if wanted is None else _useful([n for n, _ in starts], wanted)  # (runs, visits)
    # IEEE results (inf, nan) are the answer, not a reason to warn: as in PyTorch and CuPy,
    # NumPy's floating-point warnings stay off; gg.detect_anomaly() is the tool to find them.
    with np.errstate(all="ignore"):
        try:
            _walk(starts, retain_graph, sink, useful, graph, state.anomaly.enabled)
        except MemoryError as e:
            out_of_memory(e, f"backward on {starts[0][0].device}")
    return sink


def _walk(starts, retain_graph, sink, useful, graph, anomaly):
    grads = {}
    heap = []
    for node, seed in starts:
        if node in grads:
            grads[node] = grads[node] + seed
        else:
            grads[node] = seed
            heapq.heappush(heap, (-node.seq, node))
    while heap:
        _, node = heapq.heappop(heap)
        dout = grads.pop(node)
        if sink.node_slots and node in sink.node_slots:
            sink.node(node, dout)
            if sink.cut:
                continue
        if node.saved is _FREED:
            raise RuntimeError(
                f"trying to backward through the graph a second time: the buffers saved by "
                f"'{node.op.name}' were already freed. Pass retain_graph=True to the first "
                "backward() call if you need to backward through the graph again."
            )
        if useful is not None and node not in useful[0]:
            continue
        if node.versions:
            _check_versions(node)
        if graph is None:
            in_grads, owns = node.op.run_backward(node.xp, dout, node.saved)
        else:
            in_grads, owns = graph.backward(node, dout)
        dout = None
        if not retain_graph:
            node.saved = _FREED
        # Anomaly mode checks gradients when backward runs inside it, or when the node was
        # made inside it (it recorded where).
        if anomaly or node.where is not None:
            check_grads(node, [g if g is None or _is_array(g) else g.data for g in in_grads])
        last = len(owns) - 1
        for i, (parent, g, shape, dtype) in enumerate(
            zip(node.parents, in_grads, node.in_shapes, node.in_dtypes, strict=False)
        ):
            if parent is None or g is None:
                continue
            owned = owns[i if i < last else last]
            if g.shape != shape:
                g = unbroadcast(g, shape)
                owned = True  # a sum over the broadcast dims: a new array
            if g.dtype is not dtype and g.dtype != dtype:
                g = g.astype(dtype)
                owned = True
            if isinstance(parent, Node):
                if useful is not None and parent not in useful[1]:
                    continue
                if parent in grads:
                    grads[parent] = grads[parent] + g
                else:
                    grads[parent] = g
                    heapq.heappush(heap, (-parent.seq, parent))
            else:
                sink.leaf(parent, g, owned)
