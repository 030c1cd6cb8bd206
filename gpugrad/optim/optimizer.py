"""Optimizer: parameter groups, state, state dicts, and the fused update of a whole step.

``step()`` sorts the parameters that have a gradient into three paths:

- CPU, float32/float64, C-contiguous: one Numba call per dtype updates them all
  (``backends/cpu_optim.py``). Parameters stay where they are and are written in place; their
  flat views are kept in a typed list that is rebuilt only when a parameter's array object
  changes (``Module.to``, a new parameter group). The optimizer's state for those parameters
  lives in flat buffers, one per kind of state, and ``state[p]`` holds views into them.
  Gradients are new arrays after every backward, so a list of them would be rebuilt every step
  anyway; they are copied into one flat buffer instead (one memcpy each).
- CUDA, float32/float64, contiguous: ``_step_cuda``, one multi-tensor kernel launch per GPU
  and dtype over all of them (``kernels/optim.cu``).
- Everything else, and everything when ``gg.config.kernels`` is off: ``_reference_step``, the
  plain NumPy/CuPy rule, one parameter at a time. It is the specification the fast paths are
  tested against.

Every updated parameter's version counter is bumped, so a graph that saved its old value
refuses to backward through it.
"""

from __future__ import annotations

import copy

import numpy as np
from numba.typed import List

from .. import state
from ..device import move
from ..engine import enable_grad, no_grad
from ..state import config
from ..tensor import Tensor

_LIST_GRADS_ABOVE = 8192  # mean elements per parameter above which gradients are not packed
_TUPLE_GRADS_UP_TO = 128  # parameters of one dtype whose gradients go to the kernel as a tuple


class _Bucket:
    """The fused path's view of all CPU parameters of one dtype: flat views, flat buffers."""

    def __init__(self, params, dtype, state_names, state):
        self.params = params
        self.arrays = [p.data for p in params]
        sizes = [p.size for p in params]
        self.offsets = np.zeros(len(params) + 1, np.int64)
        np.cumsum(sizes, out=self.offsets[1:])
        self.bounds = self.offsets.tolist()
        total = int(self.offsets[-1])
        self.flat_params = List([a.reshape(-1) for a in self.arrays])
        self.grads = np.zeros(total, dtype)
        self.buffers = {name: np.zeros(total, dtype) for name in state_names}
        self.index = {id(p): k for k, p in enumerate(params)}
        # Existing state (from the reference path, a load, or an older bucket) moves into views.
        for k, p in enumerate(params):
            st = state.get(p)
            if not st:
                continue
            for name, buf in self.buffers.items():
                if name in st:
                    view = self.view(buf, k)
                    view[...] = np.asarray(st[name], dtype).reshape(p.shape)
                    st[name] = view

    def view(self, buf, k):
        return buf[self.offsets[k] : self.offsets[k + 1]].reshape(self.params[k].shape)

    def valid_for(self, params) -> bool:
        return len(params) == len(self.params) and all(
            p is q and p.data is a for p, q, a in zip(params, self.params, self.arrays, strict=True)
        )


def _fusable(p: Tensor) -> bool:
    d = p.data
    return (
        p.device == "cpu"
        and d.dtype in (np.float32, np.float64)
        and d.flags.c_contiguous
        and d.flags.writeable
    )


class Optimizer:
    """Base class: holds ``param_groups`` (dicts with "params" and hyperparameters) and
    ``state`` (per-parameter dicts), and applies a subclass's update rule in ``step()``."""

    # Subclasses set these: the per-parameter table columns of their CPU kernel.
    _columns: tuple = ()

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict = {}
        self._buckets: dict = {}
        self._last_rows: list | None = None  # the hp rows of the last CPU step and their table
        self._last_hp = None
        self._sorted = None  # the last _paths() result and what it was computed for
        if isinstance(params, Tensor):
            raise TypeError(
                "params must be an iterable of tensors or of dicts, got a single Tensor; "
                "pass [tensor] or model.parameters()"
            )
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones: defaults)."""
        if not isinstance(group, dict):
            raise TypeError(f"a parameter group must be a dict, got {type(group).__name__}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer: parameter {i} is a {type(p).__name__}, not a Tensor")
            if not p.is_leaf:
                raise ValueError(
                    f"optimizer: parameter {i} {p.shape} is not a leaf tensor; optimize the "
                    "tensors you created, not results computed from them"
                )
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer: some parameters appear in more than one group")
        new = {k: v for k, v in group.items() if k != "params"}
        for k, v in self.defaults.items():
            new.setdefault(k, v)
        self._validate(new)
        new["params"] = params
        self.param_groups.append(new)
        self._buckets.clear()

    def _validate(self, group: dict) -> None:
        """Raise ValueError for hyperparameters out of range (subclasses extend)."""
        if group["lr"] < 0:
            raise ValueError(f"invalid learning rate: {group['lr']}")
        if group.get("weight_decay", 0) < 0:
            raise ValueError(f"invalid weight_decay value: {group['weight_decay']}")

    # ------------------------------------------------------------------ stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (``set_to_none=False``: fill them with zeros instead)."""
        if state.capture is not None:  # gg.cpu_graph replays this call
            state.capture.call(self.zero_grad, set_to_none)
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure`` re-evaluates the loss."""
        capture = state.capture
        if capture is None:
            return self._step(closure)
        # gg.cpu_graph: the replay calls step() again; nothing inside it is recorded as an op
        if closure is not None:
            raise RuntimeError("cpu_graph: an optimizer step with a closure cannot be captured")
        capture.call(self.step)
        capture.paused += 1
        try:
            return self._step(None)
        finally:
            capture.paused -= 1

    def _step(self, closure):
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            fused, cuda, reference = self._paths()
            for dtype, items in fused.items():
                self._step_cpu(dtype, items)
            if cuda:
                self._step_cuda([(g, p) for g, p in cuda if p.grad is not None])
            for group, p in reference:
                if p.grad is not None:
                    self._buckets.clear()  # the reference may create state outside the buckets
                    self._reference_step(group, p, self._grad(p), self.state.setdefault(p, {}))
                    p._version[0] += 1
        return loss

    def _paths(self):
        """The parameters sorted into the fused CPU step (by dtype), the CUDA step and the
        reference, as (group, parameter) pairs. Kept from step to step while the parameters'
        arrays are the same objects and ``gg.config.kernels`` has not changed."""
        arrays = [p.data for g in self.param_groups for p in g["params"]]
        cached = self._sorted
        if (
            cached is not None
            and cached[0] == config.kernels
            and len(cached[1]) == len(arrays)
            and all(a is b for a, b in zip(arrays, cached[1], strict=True))
        ):
            return cached[2]
        fused, cuda, reference = {}, [], []
        for group in self.param_groups:
            for p in group["params"]:
                if not config.kernels:
                    reference.append((group, p))
                elif _fusable(p):
                    fused.setdefault(p.dtype, []).append((group, p))
                elif p.device != "cpu":
                    cuda.append((group, p))
                else:
                    reference.append((group, p))
        self._sorted = (config.kernels, arrays, (fused, cuda, reference))
        return fused, cuda, reference

    @staticmethod
    def _grad(p: Tensor):
        g = p.grad.data
        return g if g.dtype == p.dtype else g.astype(p.dtype)

    def _step_cpu(self, dtype, items) -> None:
        """One Numba call over every CPU parameter of one dtype (inactive ones are skipped)."""
        params = [p for _, p in items]
        bucket = self._buckets.get(dtype)
        names = self._state_names()
        if (
            bucket is None
            or not bucket.valid_for(params)
            or not set(names) <= bucket.buffers.keys()
        ):
            bucket = self._buckets[dtype] = _Bucket(params, dtype, names, self.state)
        # Plain Python ints and lists here: indexing NumPy arrays element by element costs
        # about a microsecond per access, which adds up over a deep model's parameters.
        bounds = bucket.bounds
        idle = [0.0] * len(self._columns)
        rows = []
        group_names = {}
        state = self.state
        # Up to _TUPLE_GRADS_UP_TO parameters: hand the kernel the gradients as they are, in a
        # tuple (Numba reads a tuple's arrays in ~0.2 us each, and compiles the kernel once per
        # parameter count). More parameters: large ones in a typed list (~3 us a parameter to
        # build), small ones packed into the flat buffer (a memcpy costs less than that below
        # ~8k elements).
        tupled = len(params) <= _TUPLE_GRADS_UP_TO
        listed = tupled or bounds[-1] >= _LIST_GRADS_ABOVE * len(params)
        grads = [] if listed else bucket.grads
        for k, (group, p) in enumerate(items):
            grad = p._grad
            if grad is None:
                rows.append(idle)
                if listed:
                    grads.append(bucket.grads[:0])
                continue
            if listed:
                g = grad.data if grad.data.dtype == dtype else grad.data.astype(dtype)
                grads.append(np.ascontiguousarray(g).reshape(-1))
            else:
                grads[bounds[k] : bounds[k + 1]] = grad.data.reshape(-1)
            st = state.get(p)
            if st is None:
                st = state[p] = {}
            row = self._row(group, st)
            row[0] = 1.0
            rows.append(row)
            key = id(group)
            if key not in group_names:
                group_names[key] = self._state_names(group)
            for name in group_names[key]:
                if name not in st:
                    st[name] = bucket.view(bucket.buffers[name], k)
        if rows == self._last_rows:  # the same rows as last step (plain SGD): the same table
            hp = self._last_hp
        else:
            hp = np.array(rows, np.float64).reshape(len(params), len(self._columns))
            self._last_rows, self._last_hp = rows, hp
        self._launch_cpu(bucket, tuple(grads) if tupled else List(grads) if listed else grads, hp)
        for k, p in enumerate(params):
            if rows[k] is not idle:
                p._version[0] += 1

    def _step_cuda(self, items) -> None:
        """One multi-tensor kernel launch per (GPU, dtype) over its parameters (kernels/optim.cu).

        The kernel takes device tables of parameter, gradient and state pointers with the same
        per-parameter ``hp`` rows as ``_step_cpu``; state buffers are ordinary CuPy arrays in
        ``state[p]``. Other dtypes and non-contiguous parameters take the reference rule.
        """
        self._buckets.clear()
        launches: dict = {}
        for group, p in items:
            fast = p.dtype in (np.float32, np.float64) and p.data.flags.c_contiguous
            if fast:
                launches.setdefault((p.device, p.dtype), []).append((group, p))
            else:
                self._reference_step(group, p, self._grad(p), self.state.setdefault(p, {}))
                p._version[0] += 1
        for (device, _), group_items in launches.items():
            xp = group_items[0][1]._xp
            params, grads, rows = [], [], []
            states: dict[str, list] = {name: [] for name in self._state_names()}
            for group, p in group_items:
                st = self.state.setdefault(p, {})
                row = self._row(group, st)  # before creating buffers: SGD's "first" reads it
                row[0] = 1.0
                rows.append(row)
                mine = self._state_names(group)
                for name in states:
                    if name in mine and name not in st:
                        st[name] = xp.zeros_like(p.data)
                    states[name].append(st.get(name) if name in mine else None)
                params.append(p.data)
                grads.append(xp.ascontiguousarray(self._grad(p)))
            hp = np.array(rows, np.float64).reshape(len(params), len(self._columns))
            with xp.cuda.Device(int(device.split(":")[1])):
                self._launch_cuda(params, grads, states, hp)
            for _, p in group_items:
                p._version[0] += 1

    def _launch_cuda(self, params, grads, states, hp) -> None:
        raise NotImplementedError

    # Subclasses implement these five.
    def _state_names(self, group: dict | None = None) -> list[str]:
        """The flat state buffers the kernel needs (for one group, or for any group)."""
        return []

    def _row(self, group: dict, state: dict) -> list[float]:
        """Parameter k's row of the kernel's table (column 0 is set by the caller); may advance
        per-parameter counters in ``state`` (Adam's step)."""
        raise NotImplementedError

    def _launch_cpu(self, bucket: _Bucket, grads, hp: np.ndarray) -> None:
        """Run the CPU kernel; ``grads`` is the flat buffer or a typed list of flat arrays."""
        raise NotImplementedError

    def _reference_rows(self, params, grads, states, hp) -> None:
        """Apply the rule of ``gpugrad.optim_rules`` to whole arrays (the reference)."""
        raise NotImplementedError

    def _reference_step(self, group: dict, p: Tensor, grad, state: dict) -> None:
        """The update rule for one parameter on whole arrays, in place on ``p.data``: the
        specification the Numba and CUDA steps are tested against."""
        row = self._row(group, state)  # before creating buffers: SGD's "first" reads it
        row[0] = 1.0
        mine = self._state_names(group)
        for name in mine:
            if name not in state:
                state[name] = p._xp.zeros_like(p.data)
        states = {name: [state[name] if name in mine else None] for name in self._state_names()}
        self._reference_rows([p.data], [grad], states, np.array([row], np.float64))

    # ------------------------------------------------------------------ state dicts
    def state_dict(self) -> dict:
        """{"state": {index: {name: array or number}}, "param_groups": [{..., "params": [index]}]}

        Parameters are numbered in group order; arrays are NumPy copies.
        """
        index = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append(
                {**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}, "params": ids}
            )
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = {k: _export(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by ``state_dict`` (checked before applied)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"load_state_dict: the saved state has {len(groups)} parameter group(s), "
                f"this optimizer has {len(self.param_groups)}"
            )
        by_index = {}
        for i, (saved, own) in enumerate(zip(groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(own["params"]):
                raise ValueError(
                    f"load_state_dict: group {i} has {len(saved['params'])} parameter(s) in the "
                    f"saved state and {len(own['params'])} here"
                )
            by_index.update(zip(saved["params"], own["params"], strict=True))
        new_state = {}
        for idx, st in state_dict["state"].items():
            if idx not in by_index:
                raise ValueError(f"load_state_dict: state for unknown parameter index {idx}")
            p = by_index[idx]
            entry = {}
            for k, v in st.items():
                if isinstance(v, np.ndarray | Tensor):
                    arr = v.numpy() if isinstance(v, Tensor) else v
                    if arr.shape != p.shape:
                        raise ValueError(
                            f"load_state_dict: state {k!r} of parameter {idx} has shape "
                            f"{arr.shape}, the parameter has shape {p.shape}"
                        )
                    v = move(np.array(arr, dtype=p.dtype, copy=True), p.device)
                entry[k] = v
            new_state[p] = entry
        for saved, own in zip(groups, self.param_groups, strict=True):
            own.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
        self.state = new_state
        self._buckets.clear()

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines) + "\n)"


def _export(v):
    if isinstance(v, np.ndarray):
        return np.array(v, copy=True)
    if hasattr(v, "__cuda_array_interface__"):
        return move(v, "cpu")
    return v
