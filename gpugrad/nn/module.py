"""Module: a container of parameters and sub-modules, with PyTorch's registration rules.

Assigning a leaf tensor that requires grad to an attribute registers it as a parameter;
assigning a Module registers a child; ``register_buffer`` registers a tensor that is state but
not a parameter (BatchNorm's running statistics): it is saved, loaded and moved with the
module, and no optimizer sees it. Everything else is an ordinary attribute. Names follow
PyTorch (``"0.weight"`` inside a Sequential, ``"encoder.fc.bias"`` when nested, a module's
parameters then its buffers), so state dicts map one to one.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .. import aliases
from ..device import move, parse_device
from ..engine import no_grad
from ..tensor import Tensor


def Parameter(data, dtype=None, device=None, requires_grad: bool = True) -> Tensor:
    """A leaf tensor that requires grad: what a Module registers as a parameter.

    >>> Parameter([1.0, 2.0]).requires_grad
    True
    """
    if isinstance(data, Tensor):
        device = data.device if device is None else device
        data = data.data
    return Tensor(data, dtype=dtype, device=device or "cpu", requires_grad=requires_grad)


def _is_parameter(value) -> bool:
    return isinstance(value, Tensor) and value.requires_grad and value.is_leaf


class LoadResult(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped."""

    missing_keys: list
    unexpected_keys: list


class _Recorder:
    """Collects (module, output shape) rows while ``Module.summary`` runs a forward."""

    rows: list | None = None


class Module:
    """Base class of layers and models: ``forward`` computes, ``__call__`` runs it."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() ran; call super().__init__() "
                "first in your module's __init__"
            )
        params, modules = self._parameters, self._modules
        buffers = self.__dict__.get("_buffers", {})
        if name in buffers and (value is None or isinstance(value, Tensor)):
            buffers[name] = value  # assigning to a buffer replaces it (PyTorch's rule)
            return
        params.pop(name, None)
        modules.pop(name, None)
        buffers.pop(name, None)
        if _is_parameter(value):
            self.__dict__.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            self.__dict__.pop(name, None)
            modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only reached when normal lookup fails: registered parameters and children live here.
        d = self.__dict__
        if name in d.get("_parameters", ()):
            return d["_parameters"][name]
        if name in d.get("_modules", ()):
            return d["_modules"][name]
        if name in d.get("_buffers", ()):
            return d["_buffers"][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._modules:
            del self._modules[name]
        elif name in self._buffers:
            del self._buffers[name]
        else:
            object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Tensor | None) -> None:
        """Register a parameter under ``name`` (None removes it)."""
        if param is not None and not _is_parameter(param):
            raise TypeError(
                f"register_parameter: {name!r} must be a leaf tensor with requires_grad=True"
            )
        if param is None:
            self._parameters.pop(name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register a tensor as state that is not a parameter (no gradient, no optimizer):
        ``module.<name>`` reads it, ``state_dict`` holds it unless ``persistent=False``,
        ``.to()`` moves it (and casts it when it is floating point). None registers the name
        with no tensor yet."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"register_buffer: {name!r} must be a Tensor or None, got {type(tensor).__name__}"
            )
        if name in self._parameters or name in self._modules:
            raise KeyError(f"register_buffer: {name!r} is already a parameter or a sub-module")
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if not persistent:
            object.__setattr__(self, "_non_persistent", {*self._non_persistent_names(), name})

    def _non_persistent_names(self):
        return self.__dict__.get("_non_persistent", set())

    def add_module(self, name: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} is a {type(module).__name__}, not a Module")
        self._modules[name] = module

    # ------------------------------------------------------------------ traversal
    def children(self):
        """The direct sub-modules, in registration order."""
        yield from self._modules.values()

    def named_children(self):
        yield from self._modules.items()

    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for self and every descendant, each module once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = [(f"{name}.{k}" if name else k, c) for k, c in m._modules.items()]
            stack.extend(reversed(kids))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = ""):
        """(dotted name, parameter) pairs; a parameter shared by two modules appears once."""
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = ""):
        """(dotted name, buffer) pairs of self and every descendant (None entries skipped)."""
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                if b is not None:
                    yield (f"{mname}.{bname}" if mname else bname), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    def _state_items(self):
        """(name, tensor) of everything a state dict holds: per module, in PyTorch's order,
        its parameters then its persistent buffers."""
        seen = set()
        for mname, m in self.named_modules():
            entries = list(m._parameters.items()) + [
                (k, b) for k, b in m._buffers.items()
                if b is not None and k not in m._non_persistent_names()
            ]  # fmt: skip
            for name, t in entries:
                if id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mname}.{name}" if mname else name), t

    def num_parameters(self, trainable_only: bool = False) -> int:
        """How many scalar weights the model has (Linear(3, 4): 4*3 + 4 = 16)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ modes and devices
    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``.grad = None``)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, target=None, dtype=None, *, device=None) -> Module:
        """Move and/or cast every parameter and buffer (``"cuda"``, ``gg.float64`` or
        ``"float64"``, or both; ``device=`` and ``dtype=`` by name too); returns self.

        Parameters keep their identity (their array is swapped), so an optimizer built before
        the call still holds them. Gradients follow their parameters; integer buffers (a
        counter of batches) move but keep their dtype.
        """
        device, dtype = aliases.to_arguments("Module.to", target, dtype, device)
        if device is not None:
            device = parse_device(device)
        if dtype is not None and np.dtype(dtype).kind != "f":
            raise TypeError(f"Module.to: parameters must stay floating point, got {dtype}")
        with no_grad():
            tensors = [t for p in self.parameters() for t in (p, p.grad) if t is not None]
            for t in tensors + list(self.buffers()):
                arr = t.data
                if dtype is not None and arr.dtype.kind == "f":  # counters stay integers
                    arr = arr.astype(dtype, copy=False)
                if device is not None:
                    arr = move(arr, device)
                    t.device = device
                if arr is not t.data:
                    t.data = arr
                    t._version[0] += 1
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device: int | str | None = None) -> Module:
        """To a GPU: ``cuda()``, ``cuda(1)`` or ``cuda("cuda:1")``; returns self."""
        if device is None or isinstance(device, str):
            return self.to(device or "cuda")
        return self.to(f"cuda:{int(device)}")

    def float(self) -> Module:
        """Every parameter to float32 (PyTorch's ``model.float()``); returns self."""
        return self.to(np.float32)

    def double(self) -> Module:
        """Every parameter to float64 (PyTorch's ``model.double()``); returns self."""
        return self.to(np.float64)

    def half(self) -> Module:
        return self.to(np.float16)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter; returns self. A frozen parameter gets no
        gradient, so optimizers skip it."""
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every sub-module, children first, then on self; returns self.

        >>> from gpugrad import nn
        >>> def init(m):
        ...     if isinstance(m, nn.Linear):
        ...         nn.init.zeros_(m.bias)
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU()).apply(init)
        >>> model[0].bias.tolist()
        [0.0, 0.0, 0.0]
        """
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict:
        """An ordered dict name -> NumPy array (a copy, on the host) of every parameter and
        persistent buffer."""
        return OrderedDict((k, np.array(t.numpy(), copy=True)) for k, t in self._state_items())

    def load_state_dict(self, state_dict, strict: bool = True) -> LoadResult:
        """Copy values (NumPy arrays or tensors) into the parameters and buffers, in place.

        Every key and shape is checked before anything is written, so a failed load leaves the
        module unchanged. With ``strict=False`` missing and unexpected keys are returned instead
        of raised; a shape mismatch always raises.
        """
        own = OrderedDict(self._state_items())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        values, problems = {}, []
        for k, p in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v.numpy() if isinstance(v, Tensor) else np.asarray(v)
            if tuple(arr.shape) != p.shape:
                kind = "parameter" if p.requires_grad else "buffer"
                problems.append(
                    f"size mismatch for {k!r}: the checkpoint has shape {tuple(arr.shape)}, "
                    f"the model's {kind} has shape {p.shape}"
                )
            values[k] = arr
        if strict and unexpected:
            problems.insert(0, f"unexpected key(s): {', '.join(map(repr, unexpected))}")
        if strict and missing:
            problems.insert(0, f"missing key(s): {', '.join(map(repr, missing))}")
        if problems:
            raise RuntimeError(
                f"load_state_dict: error(s) loading into {type(self).__name__} (nothing was "
                "changed):\n  " + "\n  ".join(problems)
            )
        with no_grad():
            for k, arr in values.items():
                p = own[k]
                p.data[...] = move(arr.astype(p.dtype, copy=False), p.device)
                p._version[0] += 1
        return LoadResult(missing, unexpected)

    # ------------------------------------------------------------------ running
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if _Recorder.rows is not None:
            _Recorder.rows.append((self, out.shape if isinstance(out, Tensor) else None))
        return out

    def summary(self, input_shape, dtype="float32", file=None) -> None:
        """Print each leaf layer's output shape and parameter count, then the totals.

        ``input_shape`` includes the batch dimension, e.g. ``(1, 784)``. One forward runs on
        zeros, under no_grad and unfused, so every layer shows up in the table.
        """
        from ..creation import zeros

        names = {id(m): n for n, m in self.named_modules()}
        x = zeros(tuple(input_shape), dtype=np.dtype(dtype), device=self._device())
        prev, _Recorder.rows = _Recorder.rows, []
        try:
            with no_grad():
                self(x)
            rows = _Recorder.rows
        finally:
            _Recorder.rows = prev
        table = [("Layer (type)", "Output shape", "Param #")]
        for m, shape in rows:
            if m._modules:  # containers: their layers have rows of their own
                continue
            own = sum(p.size for p in m._parameters.values())
            label = f"{names.get(id(m), '?') or type(m).__name__} ({type(m).__name__})"
            table.append((label, str(shape) if shape is not None else "-", f"{own:,}"))
        widths = [max(len(r[i]) for r in table) + 2 for i in range(3)]
        line = "=" * sum(widths)
        out = [line, _row(table[0], widths), line]
        out += [_row(r, widths) for r in table[1:]]
        total = self.num_parameters()
        out += [
            line,
            f"Total params: {total:,}",
            f"Trainable params: {self.num_parameters(trainable_only=True):,}",
            f"Non-trainable params: {total - self.num_parameters(trainable_only=True):,}",
            line,
        ]
        print("\n".join(out), file=file or sys.stdout)

    def _device(self) -> str:
        return next((p.device for p in self.parameters()), "cpu")

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The text inside this module's parentheses in ``repr`` (e.g. layer sizes)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}({extra}" if extra else f"{type(self).__name__}("
        return head + "\n" + "\n".join(lines) + "\n)"


def _row(cells, widths) -> str:
    return "".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
