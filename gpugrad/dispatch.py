"""Op entries, the implementations each one has per device, and the function that applies them.

An op is a forward function written against the array module ``xp`` plus a backward function,
declared together in ``ops/`` or ``fused/``::

    @op("relu", saves=("out",), owns=True)
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
``owns`` says which of those gradients backward allocates afresh (True for all inputs, or a
tuple of bools): the engine hands such an array to a leaf's ``.grad`` as it is and copies any
other (a view of ``dout`` or of a saved value) first, so a ``.grad`` never aliases memory that
something else holds.

These two functions are the reference: the specification every faster implementation is tested
against, and what runs wherever no faster one applies. A device module registers fast paths on
the op itself::

    @ops.relu.fast("cuda")
    def relu(xp, x):
        return launch_relu(x) if kernel_takes(x) else NotImplemented

A fast path has the signature of the reference and returns ``NotImplemented`` for an input it
does not cover (dtype, layout, shape); the next candidate runs then, ending at the reference.
``op.implementations()`` lists what is registered where; ``gg.config.kernels = False`` turns
every fast path off.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np

from . import state
from .anomaly import on_forward
from .device import out_of_memory
from .engine import Node

OPS: dict[str, Op] = {}  # every op in the table, by name
KINDS = ("cpu", "cuda")  # device kinds a fast path registers for


class FastPath:
    """A registered fast path: the function, the device kind, the direction, (for a backward)
    which gradients it allocates afresh, and the kernels it runs (CUDA kernel base names from
    ``kernels/*.cu``, or Numba functions), which ``runs_where.what_runs_where()`` reports."""

    __slots__ = ("fn", "kind", "direction", "owns", "kernels", "name")

    def __init__(self, fn, kind, direction, owns=None, kernels=()):
        self.fn = fn
        self.kind = kind
        self.direction = direction
        self.owns = owns
        self.kernels = tuple(kernels)
        self.name = f"{fn.__module__}.{fn.__qualname__}"

    def __repr__(self):
        return f"<{self.direction} fast path {self.name} on {self.kind}>"


def _owns_tuple(owns):
    """Normalise an ``owns`` declaration to a tuple of bools (the last entry repeats)."""
    if isinstance(owns, bool):
        return (owns,)
    return tuple(bool(o) for o in owns) or (False,)


class Op:
    def __init__(
        self,
        name,
        fwd,
        saves=(),
        differentiable=None,
        view=False,
        needed_by=None,
        owns=False,
        composed=None,
        save_if=None,
    ):
        if name in OPS:
            raise ValueError(f"op {name!r} is defined twice")
        OPS[name] = self
        self.name = name
        self.view = view  # the output may alias the input: they share a version counter
        self.fwd = fwd
        self.bwd = None
        self.owns = _owns_tuple(owns)
        # The op written with other ops, against a namespace of recorded ops: what gradients
        # of gradients differentiate for an op whose backward reads precomputed arrays.
        self.composed = composed
        # Fast paths per device kind, tried in registration order before the reference.
        self.fast_paths = {kind: [] for kind in KINDS}
        self.fast_backward_paths = {kind: [] for kind in KINDS}
        # The functions alone, as tuples: the loop in apply() reads these.
        self._fwd_fns = {kind: () for kind in KINDS}
        self._bwd_fns = {kind: () for kind in KINDS}
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
        self.attr_names = tuple(attrs)
        if composed is not None and not set(inputs) <= set(saves):
            raise ValueError(f"op {name!r}: a composed form needs every input in saves={saves}")
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
                when = (save_if or {}).get(s)
                self._getters.append(("input", (inputs.index(s), user, when)))
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

    # ------------------------------------------------------------------ implementations
    def fast(self, kind: str, kernels=()):
        """Decorator: register a forward fast path for device ``kind`` ("cpu" or "cuda")
        that runs ``kernels``."""
        return self._register(kind, "forward", None, kernels)

    def fast_backward(self, kind: str, owns=False, kernels=()):
        """Decorator: register a backward fast path for ``kind``; ``owns`` as for the op."""
        return self._register(kind, "backward", _owns_tuple(owns), kernels)

    def _register(self, kind, direction, owns, kernels):
        if kind not in KINDS:
            raise ValueError(f"{self.name}: unknown device kind {kind!r}; one of {KINDS}")

        def register(fn):
            paths = self.fast_paths if direction == "forward" else self.fast_backward_paths
            if any(p.fn is fn for p in paths[kind]):
                raise ValueError(f"{self.name}: {fn.__qualname__} is registered twice")
            paths[kind].append(FastPath(fn, kind, direction, owns, kernels))
            self._refresh()
            return fn

        return register

    def _refresh(self):
        for kind in KINDS:
            self._fwd_fns[kind] = tuple(p.fn for p in self.fast_paths[kind])
            self._bwd_fns[kind] = tuple((p.fn, p.owns) for p in self.fast_backward_paths[kind])

    def implementations(self) -> dict:
        """What runs where: {kind: {"forward": [names], "backward": [names]}}, each list in the
        order tried, ending with "reference"."""
        table = {}
        for kind in KINDS:
            table[kind] = {
                "forward": [p.name for p in self.fast_paths[kind]] + ["reference"],
                "backward": [p.name for p in self.fast_backward_paths[kind]] + ["reference"],
            }
        return table

    def run_forward(self, kind, xp, arrays, attrs):
        """The first fast path that takes the input, else the reference."""
        if state.config.kernels:
            for fn in self._fwd_fns[kind]:
                res = fn(xp, *arrays, **attrs)
                if res is not NotImplemented:
                    return res
        return self.fwd(xp, *arrays, **attrs)

    def run_backward(self, xp, dout, saved):
        """(gradients, owns) from the first backward fast path that takes the input, else from
        the reference; ``owns`` flags the gradients allocated afresh."""
        if state.config.kernels:
            for fn, owns in self._bwd_fns["cpu" if xp is np else "cuda"]:
                res = fn(xp, dout, *saved)
                if res is not NotImplemented:
                    return res, owns
        return self.bwd(xp, dout, *saved), self.owns

    @contextlib.contextmanager
    def restricted(self, kind, forward=None, backward=None):
        """Within the block, only the given fast paths (a ``FastPath`` or None) run on ``kind``,
        then the reference. Yields a dict counting the calls each path took (``"forward"``,
        ``"backward"``) and declined (``"forward_declined"``, ...): the op-info harness uses it
        to compare one implementation at a time with the reference and to see it was reached.
        """
        counts = {"forward": 0, "backward": 0, "forward_declined": 0, "backward_declined": 0}

        def counted(path, direction):
            def run(*args, **kwargs):
                res = path.fn(*args, **kwargs)
                key = direction if res is not NotImplemented else f"{direction}_declined"
                counts[key] += 1
                return res

            return run

        saved = (dict(self._fwd_fns), dict(self._bwd_fns))
        try:
            self._fwd_fns[kind] = () if forward is None else (counted(forward, "forward"),)
            self._bwd_fns[kind] = (
                () if backward is None else ((counted(backward, "backward"), backward.owns),)
            )
            yield counts
        finally:
            self._fwd_fns, self._bwd_fns = saved

    def __call__(self, *inputs, **attrs):
        return apply(self, inputs, attrs)


def op(
    name,
    saves=(),
    differentiable=None,
    view=False,
    needed_by=None,
    owns=False,
    composed=None,
    save_if=None,
):
    """Declare an op from its forward function; attach the backward with ``@<op>.backward``.

    ``needed_by={"x": "y"}`` says the saved input x serves only the gradient of input y;
    ``save_if={"x": predicate}`` that it is saved only when ``predicate(attrs)`` holds.
    ``composed(xp, *inputs, **attrs)`` is the op written with other ops (for gradients of
    gradients through fused ops; ``graph.py``).
    """

    def wrap(fwd):
        return Op(
            name,
            fwd,
            saves,
            differentiable=differentiable,
            view=view,
            needed_by=needed_by,
            owns=owns,
            composed=composed,
            save_if=save_if,
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
    requires = requires and state.grad_mode.enabled
    arrays = [t.data for t in inputs]
    try:
        if device == "cpu":
            xp = np
            # IEEE results (log(0) = -inf, 0/0 = nan) are returned without NumPy's warnings, as
            # PyTorch and CuPy do; gg.detect_anomaly() raises on them instead.
            token = quiet_enter()
            try:
                res = op.run_forward("cpu", np, arrays, attrs)
            finally:
                quiet_exit(token)
        else:
            xp = first._xp
            res = op.run_forward("cuda", xp, arrays, attrs)
    except (ValueError, TypeError, IndexError) as e:
        raise _named(op, arrays, e) from e
    except MemoryError as e:
        out_of_memory(e, f"{op.name} on {device}")
    out, extras = res if op.returns_extras else (res, None)
    if state.forward_hooks:
        for hook in state.forward_hooks:
            hook(op, out)
    out_device = attrs["device"] if op.name == "to_device" else device
    # The result has the class of the first input: the engine layer never imports Tensor.
    result = type(first)._wrap(out, out_device, requires)
    if op.view:
        result._version = first._version  # an in-place change to either shows in both
        result._view_version = first._version[0]
    if requires:
        result._node = _record(op, inputs, arrays, attrs, out, extras, result, xp)
        if state.anomaly.enabled:
            on_forward(result._node, out)
    if state.capture is not None:  # gg.cpu_graph is recording this step
        state.capture.forward(op, inputs, arrays, attrs, out, extras, result)
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
            key, user, when = key
            if (user is not None and parents[user] is None) or (
                when is not None and not when({**op._attr_defaults, **attrs})
            ):
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
        inputs[0].device,
    )
