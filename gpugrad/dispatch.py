"""Op entries and the one function that applies them.

An op is a forward function written against the array module ``xp`` plus a backward function,
declared together in ``ops.py``::

    @op("relu", saves=("out",))
    def relu(xp, x):
        return xp.maximum(x, 0)

    @relu.backward
    def relu_backward(xp, dout, out):
        return (dout * (out > 0),)

Forward parameters before ``*`` are array inputs (tensors at the call site); keyword-only
parameters are attributes (axis, shapes, flags). ``saves`` names what backward receives, in
order: an input or attribute name, ``"out"``, ``"<input>_shape"``, ``"needs_grad"`` (a tuple
of bools, one per input), or a name the forward returns in a dict: a forward that saves extra
values returns ``(out, {"name": value})``. Backward returns one gradient (or None) per input.

``cpu=`` and ``cuda=`` name device fast paths (functions in ``backends/cpu.py`` and
``backends/cuda.py`` with the forward's signature); the forward above stays the reference they
are tested against. ``gg.config.kernels = False`` turns the fast paths off.
"""

from __future__ import annotations

import inspect

import numpy as np

from . import autograd
from .autograd import Node

_Tensor = None  # gpugrad.tensor.Tensor, bound by tensor.py at import (it imports this module)


class config:
    """Global switches. ``kernels``: use the device fast paths (Numba/CUDA) where they exist.
    ``deterministic``: bitwise-reproducible results only; an op whose only GPU path sums with
    atomics (the order of float additions varies run to run) takes a deterministic path where
    one exists and raises RuntimeError where none does (see ``nondeterministic``)."""

    kernels = True
    matmul = "cublas"  # "cublas" or "custom" on the GPU
    deterministic = False


def nondeterministic(what: str) -> None:
    """Called by a code path that is not bitwise reproducible: raise if determinism is on."""
    if config.deterministic:
        raise RuntimeError(
            f"{what} is nondeterministic (it sums with atomicAdd on the GPU, so the order of "
            "float additions varies between runs) and gg.config.deterministic is True; set it "
            "to False to allow it, or run this op on the CPU"
        )


OPS: dict[str, Op] = {}  # every op in the table, by name


class Op:
    def __init__(
        self,
        name,
        fwd,
        saves=(),
        cpu=None,
        cuda=None,
        differentiable=None,
        view=False,
        needed_by=None,
    ):
        if name in OPS:
            raise ValueError(f"op {name!r} is defined twice")
        OPS[name] = self
        self.name = name
        self.view = view  # the output may alias the input: they share a version counter
        self.fwd = fwd
        self.bwd = None
        self.cpu = cpu
        self.cuda = cuda
        self._fast = {}  # device kind -> resolved fast-path function
        params = list(inspect.signature(fwd).parameters.values())[1:]  # drop xp
        self.variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        inputs = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        attrs = [p.name for p in params if p.kind is p.KEYWORD_ONLY]
        # an attribute the caller leaves out still reaches backward, with its default
        self._attr_defaults = {
            p.name: p.default
            for p in params
            if p.kind is p.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        }
        self.inputs = tuple(inputs)
        self.differentiable = differentiable  # None: every input; else a tuple of bools
        self.saves = tuple(saves)
        self._getters = []
        self.returns_extras = False
        for s in saves:
            if s == "out":
                self._getters.append(("out", None))
            elif s == "needs_grad":
                self._getters.append(("needs", None))
            elif s in inputs:
                # (index, the input whose gradient alone needs it): saved only when that one
                # needs a gradient, so a constant operand's partner is neither kept nor
                # version-checked (x * 5 keeps nothing of x)
                user = (needed_by or {}).get(s)
                user = None if user is None else inputs.index(user)
                self._getters.append(("input", (inputs.index(s), user)))
            elif s.endswith("_shape") and s[:-6] in inputs:
                self._getters.append(("shape", inputs.index(s[:-6])))
            elif s in attrs:
                self._getters.append(("attr", s))
            else:
                self._getters.append(("extra", s))
                self.returns_extras = True
        self.__doc__ = fwd.__doc__
        self.__name__ = name

    def backward(self, fn):
        self.bwd = fn
        return fn

    def __repr__(self):
        return f"<op {self.name}>"

    def impl(self, device: str):
        """The forward to run on a device: its fast path when enabled, else the reference."""
        if not config.kernels:
            return self.fwd
        kind = "cpu" if device == "cpu" else "cuda"
        name = self.cpu if kind == "cpu" else self.cuda
        if name is None:
            return self.fwd
        fn = self._fast.get(kind)
        if fn is None:
            fn = self._fast[kind] = getattr(_backend(kind), name)
        return fn

    def backward_impl(self, xp):
        """The backward to run: the backend's ``<name>_backward`` when the op has a fast path
        there and kernels are on, else the reference written next to the forward."""
        if not config.kernels or (self.cpu is None and self.cuda is None):
            return self.bwd
        kind = "cpu" if xp is np else "cuda"
        key = kind + "_bwd"
        fn = self._fast.get(key)
        if fn is None:
            name = self.cpu if kind == "cpu" else self.cuda
            fn = self.bwd if name is None else getattr(_backend(kind), f"{name}_backward", self.bwd)
            self._fast[key] = fn
        return fn

    def __call__(self, *inputs, **attrs):
        return apply(self, inputs, attrs)


def _backend(kind: str):
    """The module of device fast paths: backends/cpu.py (Numba) or backends/cuda.py (kernels/)."""
    if kind == "cpu":
        from .backends import cpu

        return cpu
    from .backends import cuda

    return cuda


def op(name, saves=(), cpu=None, cuda=None, differentiable=None, view=False, needed_by=None):
    """Declare an op from its forward function; attach the backward with ``@<op>.backward``.

    ``needed_by={"x": "y"}`` says the saved input x serves only the gradient of input y.
    """

    def wrap(fwd):
        return Op(
            name,
            fwd,
            saves,
            cpu=cpu,
            cuda=cuda,
            differentiable=differentiable,
            view=view,
            needed_by=needed_by,
        )

    return wrap


try:
    # NumPy >= 2 keeps its error state in a context variable. Setting it directly costs about
    # 0.1 us; entering np.errstate costs about 3 us, as much as the rest of a recorded op.
    from numpy._core._ufunc_config import _extobj_contextvar as _errstate_var

    with np.errstate(all="ignore"):
        _IGNORE_ALL = _errstate_var.get()

    def quiet_enter():
        """Turn NumPy's floating-point warnings off; returns the token for ``quiet_exit``."""
        return _errstate_var.set(_IGNORE_ALL)

    def quiet_exit(token) -> None:
        _errstate_var.reset(token)

except ImportError:  # NumPy 1.x: the public context manager

    def quiet_enter():
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def quiet_exit(token) -> None:
        token.__exit__(None, None, None)


def apply(op: Op, inputs, attrs):
    """Run an op's forward on tensors and, when any input needs a gradient, record a Node."""
    first = inputs[0]
    device = first.device
    requires = False
    for t in inputs:
        if t.device != device:
            raise RuntimeError(
                f"{op.name}: expected all tensors on one device, found {device} and {t.device}; "
                "move them with .to(device) first"
            )
        requires = requires or t._requires_grad
        if t._view_version is not None and t._version[0] != t._view_version and t._node is not None:
            _stale_view(op, t)
    requires = requires and autograd._GradMode.enabled
    arrays = [t.data for t in inputs]
    try:
        if device == "cpu":
            xp = np
            # IEEE results (log(0) = -inf, 0/0 = nan) are returned without NumPy's warnings, as
            # PyTorch and CuPy do; gg.detect_anomaly() raises on them instead.
            token = quiet_enter()
            try:
                res = op.impl(device)(np, *arrays, **attrs)
            finally:
                quiet_exit(token)
        else:
            xp = first._xp
            res = op.impl(device)(xp, *arrays, **attrs)
    except (ValueError, TypeError, IndexError) as e:
        raise _named(op, arrays, e) from e
    except MemoryError as e:
        from .backends import out_of_memory

        out_of_memory(e, f"{op.name} on {device}")
    out, extras = res if op.returns_extras else (res, None)
    if forward_hooks:
        for hook in forward_hooks:
            hook(op, out)
    out_device = attrs["device"] if op.name == "to_device" else device
    result = _Tensor._wrap(out, out_device, requires)
    if op.view:
        result._version = first._version  # an in-place change to either shows in both
        result._view_version = first._version[0]
    if requires:
        result._node = _record(op, inputs, arrays, attrs, out, extras, result, xp)
        if _anomaly.enabled:
            from .anomaly import on_forward

            on_forward(result._node, out)
    return result


def _stale_view(op, t):
    """A view whose base changed in place since the view was made: its memory holds the new
    values but its graph still describes the old ones, so any gradient through it is wrong."""
    raise RuntimeError(
        f"{op.name}: input {t.shape} is a view (made by '{t._node.op.name}') of a tensor that "
        "was changed in place after the view was taken, so its gradient would be wrong; take "
        "the view again after the in-place change, or change a copy instead"
    )


def _named(op, arrays, error):
    """The array library's error, prefixed with the op and its input shapes and dtypes."""
    if str(error).startswith(f"{op.name}:"):
        return error
    inputs = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in arrays)
    return type(error)(f"{op.name}: inputs {inputs}: {error}")


def _record(op, inputs, arrays, attrs, out, extras, result, xp):
    diff = op.differentiable
    if diff is None:  # the common case, without the per-input flag lookup
        parents = tuple(
            [(t if t._node is None else t._node) if t._requires_grad else None for t in inputs]
        )
    else:
        parents = tuple(
            [
                (t if t._node is None else t._node)
                if t._requires_grad and diff[min(i, len(diff) - 1)]
                else None
                for i, t in enumerate(inputs)
            ]
        )
    saved = []
    versions = []  # (counter, value now, which): backward checks nothing changed in place
    for kind, key in op._getters:
        if kind == "out":
            saved.append(out)
            versions.append((result._version, result._version[0], "out"))
        elif kind == "input":
            key, user = key
            if user is not None and parents[user] is None:
                saved.append(None)
                continue
            t = inputs[key]
            saved.append(t.data)
            versions.append((t._version, t._version[0], key))
        elif kind == "shape":
            saved.append(arrays[key].shape)
        elif kind == "attr":
            saved.append(attrs[key] if key in attrs else op._attr_defaults[key])
        elif kind == "needs":
            saved.append(tuple(p is not None for p in parents))
        else:
            saved.append(extras[key])
    return Node(
        op,
        parents,
        tuple(saved),
        tuple(versions),
        tuple([a.shape for a in arrays]),
        tuple([a.dtype for a in arrays]),
        out.shape,
        out.dtype,
        xp,
    )


# Callables hook(op, out) run after every forward (gg.crosscheck records values through it).
forward_hooks: list = []


class _anomaly:
    enabled = False
