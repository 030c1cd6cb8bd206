"""A captured training step on the CPU: ``gg.cpu_graph(step_fn, *example_inputs)``.

The CPU counterpart of ``gg.cuda.graph``. A small model's eager step on the CPU spends most of
its time in Python around the arrays: each op call checks devices and versions, wraps a Tensor
and records a Node, and backward walks those nodes. Capturing the step once and replaying it
keeps only the array work: for each op the same implementation choice the eager call makes
(``op.run_forward``: the first fast path that takes the inputs, else the reference), and
backward as the precomputed schedule of the recorded graph (``op.run_backward`` per node in the
order the engine walks it, the same gradient routing, sums, unbroadcasting and copies).

How it works: ``step_fn`` runs once for real on the example inputs while the recorder (hooked
into ``dispatch.apply``, ``graph.run_backward`` and the optimizers' ``step`` and
``zero_grad``) notes every op application, every ``backward()`` and every optimizer call, in
order. An array an op reads is either an example input, the result of an earlier op of the
step, or a tensor from outside the step (a parameter): that tensor's current ``.data`` is read
at every replay, so parameters updated in place, or replaced, are seen. ``captured(*inputs)``
replays the ops on new inputs of the same shapes and dtypes, delivers the gradients to the
leaves' ``.grad`` exactly as backward does, calls the optimizer methods the step called, and
returns the step's outputs as new tensors (without a graph).

What a replay repeats is the array work alone: Python code of ``step_fn`` that is not an op
(input checks that read values, such as ``F.cross_entropy``'s target range check; a learning
rate schedule; logging) runs at capture time only, and anomaly mode and forward hooks are not
consulted. A step whose ops depend on values (a Python ``if`` on a tensor) replays the branch
it took at capture. Everything must be on the CPU.
"""

from __future__ import annotations

import numpy as np

from . import state
from .dispatch import quiet_enter, quiet_exit
from .engine import Node, unbroadcast
from .tensor import Tensor

_SLOT, _TENSOR, _CONST = 0, 1, 2  # how a replayed op finds each of its arrays


class _Recorder:
    """Collects the events of one step while it runs (set as ``state.capture``)."""

    def __init__(self, inputs):
        self.slot_of: dict[int, int] = {}  # id(array) -> slot
        self.keep: list = []  # every recorded array, so no id is reused during the capture
        self.events: list = []
        self.paused = 0
        self.inputs = [self._new_slot(t.data) for t in inputs]

    def _new_slot(self, array) -> int:
        self.slot_of[id(array)] = len(self.keep)
        self.keep.append(array)
        return len(self.keep) - 1

    def _ref(self, tensor, array):
        k = self.slot_of.get(id(array))
        if k is not None:
            return (_SLOT, k)
        if tensor is not None:
            return (_TENSOR, tensor)  # a parameter or other tensor from outside the step
        return (_CONST, array)

    def forward(self, op, inputs, arrays, attrs, out, extras, result) -> None:
        if self.paused:
            return
        if result.device != "cpu":
            raise RuntimeError(f"cpu_graph: '{op.name}' ran on {result.device}; use gg.cuda.graph")
        refs = tuple(self._ref(t, a) for t, a in zip(inputs, arrays, strict=True))
        out_slot = self._new_slot(out)
        extra_slots = None
        if extras is not None:
            extra_slots = {
                k: self._new_slot(v) if _is_array(v) else None for k, v in extras.items()
            }
        self.events.append(("forward", op, refs, dict(attrs), out_slot, extra_slots))

    def backward(self, roots, seeds, create_graph=False, targets=None) -> None:
        if self.paused:
            return
        if create_graph or targets is not None:
            raise RuntimeError(
                "cpu_graph: gradients as values (gg.grad, backward(inputs=...)) and "
                "create_graph cannot be captured; capture a step that calls backward()"
            )
        if any(r._node is None for r in roots):
            raise RuntimeError("cpu_graph: backward() on a leaf tensor cannot be captured")
        plan, index = self._schedule([r._node for r in roots])
        starts = tuple((index[r._node], self._seed(s)) for r, s in zip(roots, seeds, strict=True))
        self.events.append(("backward", plan, starts))

    @staticmethod
    def _seed(seed):
        if not _is_array(seed):
            raise RuntimeError("cpu_graph: a backward seed must be a NumPy array")
        return seed.copy()

    def call(self, fn, *args) -> None:
        if not self.paused:
            self.events.append(("call", fn, args))

    def _schedule(self, roots):
        """The nodes reachable from ``roots`` in the order the engine's walk processes them
        (decreasing sequence number), each with where its saved values come from and where
        each input's gradient goes; and each node's position in that order."""
        seen, stack = set(roots), list(roots)
        while stack:
            node = stack.pop()
            for p in node.parents:
                if isinstance(p, Node) and p not in seen:
                    seen.add(p)
                    stack.append(p)
        order = sorted(seen, key=lambda n: -n.seq)
        index = {n: i for i, n in enumerate(order)}
        plan = []
        for node in order:
            if node.xp is not np:
                raise RuntimeError(f"cpu_graph: '{node.op.name}' did not run on the CPU")
            saved = tuple(self._saved_ref(v) for v in node.saved)
            # where each input's gradient goes: (input index, node index or leaf, shape, dtype)
            routes = tuple(
                (j, index[p] if isinstance(p, Node) else p, node.in_shapes[j], node.in_dtypes[j])
                for j, p in enumerate(node.parents)
                if p is not None
            )
            plan.append((node.op, saved, routes))
        return plan, index

    def _saved_ref(self, value):
        if _is_array(value):
            k = self.slot_of.get(id(value))
            if k is not None:
                return (_SLOT, k)
        return (_CONST, value)


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray)


class CapturedCpuStep:
    """A captured step: call it with inputs shaped like the examples to replay it."""

    def __init__(self, step_fn, example_inputs, warmup: int = 0):
        if not example_inputs:
            raise ValueError("cpu_graph: pass at least one example input tensor")
        for i, t in enumerate(example_inputs):
            if not isinstance(t, Tensor) or t.device != "cpu":
                raise TypeError(
                    f"cpu_graph: example input {i} must be a tensor on the CPU, got "
                    f"{type(t).__name__} on {getattr(t, 'device', '?')}"
                )
        if state.capture is not None:
            raise RuntimeError("cpu_graph: a capture is already running")
        if state.anomaly.enabled:
            raise RuntimeError("cpu_graph: anomaly mode checks every op; capture outside it")
        for _ in range(warmup):
            step_fn(*example_inputs)
        recorder = _Recorder(example_inputs)
        state.capture = recorder
        try:
            outputs = step_fn(*example_inputs)
        finally:
            state.capture = None
        self.specs = [(t.data.shape, t.data.dtype) for t in example_inputs]
        self.inputs = recorder.inputs
        self.events = recorder.events
        self.slots = len(recorder.keep)
        self.outputs = _output_refs(outputs, recorder)
        self.first_outputs = outputs

    def __call__(self, *inputs):
        if len(inputs) != len(self.specs):
            raise TypeError(f"cpu_graph: expected {len(self.specs)} inputs, got {len(inputs)}")
        regs = [None] * self.slots
        for i, (x, (shape, dtype), k) in enumerate(
            zip(inputs, self.specs, self.inputs, strict=True)
        ):
            data = x.data if isinstance(x, Tensor) else np.asarray(x)
            if data.shape != shape or data.dtype != dtype:
                raise ValueError(
                    f"cpu_graph: input {i} is {data.shape} {data.dtype}; the step was captured "
                    f"for {shape} {dtype}"
                )
            regs[k] = data
        for event in self.events:
            kind = event[0]
            if kind == "forward":
                _forward(regs, *event[1:])
            elif kind == "backward":
                _backward(regs, event[1], event[2])
            else:
                event[1](*event[2])
        return _outputs(self.outputs, regs)


def _arrays(regs, refs):
    return tuple([regs[v] if k == _SLOT else (v.data if k == _TENSOR else v) for k, v in refs])


def _forward(regs, op, refs, attrs, out_slot, extra_slots):
    token = quiet_enter()
    try:
        res = op.run_forward("cpu", np, _arrays(regs, refs), attrs)
    finally:
        quiet_exit(token)
    if extra_slots is None:
        regs[out_slot] = res
        return
    regs[out_slot], extras = res
    for name, k in extra_slots.items():
        if k is not None:
            regs[k] = extras[name]


def _backward(regs, plan, starts):
    """The engine's walk over the recorded schedule, with the same routing and copies."""
    grads = [None] * len(plan)
    for i, seed in starts:  # fresh seeds, as Tensor.backward makes one per call
        grads[i] = seed.copy() if grads[i] is None else grads[i] + seed
    delivered = set()
    token = quiet_enter()  # IEEE results without warnings, as in engine.backward_pass
    try:
        for i, (op, saved, routes) in enumerate(plan):
            dout = grads[i]
            if dout is None:
                continue
            grads[i] = None
            in_grads, owns = op.run_backward(np, dout, _arrays(regs, saved))
            last = len(owns) - 1
            count = len(in_grads)
            for j, parent, shape, dtype in routes:
                g = in_grads[j] if j < count else None
                if g is None:
                    continue
                owned = owns[j if j < last else last]
                if g.shape != shape:
                    g = unbroadcast(g, shape)
                    owned = True
                if g.dtype != dtype:
                    g = g.astype(dtype)
                    owned = True
                if type(parent) is int:
                    grads[parent] = g if grads[parent] is None else grads[parent] + g
                elif parent._grad is None:
                    if not owned or id(g) in delivered:
                        g = g.copy()
                    delivered.add(id(g))
                    parent._grad = type(parent)._wrap(g, parent.device)
                else:
                    parent._grad = type(parent)._wrap(parent._grad.data + g, parent.device)
    finally:
        quiet_exit(token)


def _output_refs(outputs, recorder):
    def ref(t):
        if not isinstance(t, Tensor):
            return (_CONST, t)
        k = recorder.slot_of.get(id(t.data))
        return (_SLOT, k) if k is not None else (_TENSOR, t)

    if isinstance(outputs, tuple | list):
        return type(outputs), [ref(t) for t in outputs]
    return None, ref(outputs)


def _outputs(spec, regs):
    kind, refs = spec

    def value(r):
        k, v = r
        if k == _SLOT:
            return Tensor._wrap(regs[v], "cpu")
        return v

    if kind is None:
        return value(refs)
    return kind(value(r) for r in refs)


def graph(step_fn, *example_inputs, warmup: int = 0) -> CapturedCpuStep:
    """Capture ``step_fn(*example_inputs)`` (forward, loss, backward, optimizer) on the CPU.

    The capture runs the step once for real; the result replays it on new inputs of the same
    shapes and dtypes without per-op dispatch (see the module's documentation for what a replay
    repeats and what it does not).
    """
    return CapturedCpuStep(step_fn, example_inputs, warmup)
