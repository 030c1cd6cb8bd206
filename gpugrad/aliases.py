"""PyTorch's spellings of gpugrad's names, in one place.

gpugrad takes PyTorch's names and NumPy's habits. Where the two spell one thing differently,
this module is the single map from the PyTorch spelling to gpugrad's:

- ``KEYWORDS``: ``dim=`` / ``keepdim=`` for ``axis=`` / ``keepdims=``, accepted by every function
  decorated with ``axis_keywords`` (reductions, softmax, concatenate/stack, squeeze, ...);
- ``TENSOR_METHODS`` and ``FUNCTIONS``: plain renames (``x.view`` is ``x.reshape``, ``gg.cat`` is
  ``gg.concatenate``), installed by ``tensor.py`` and ``gpugrad/__init__.py``;
- ``TENSOR_HINTS`` and ``MODULE_HINTS``: PyTorch names gpugrad does not alias; asking for one
  raises an AttributeError that says what to write instead (other misspellings get the closest
  names).

Methods that are more than a rename (``x.float()``, ``x.numel()``, ``x.t()``, ...) live with the
other tensor methods in ``tensor_methods.py``. The README's "PyTorch → gpugrad" table lists
all of them, and ``tests/test_aliases.py`` checks it against this module. Imports only the
standard library and NumPy, so every layer may use it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import NamedTuple

import numpy as np

KEYWORDS = {"dim": "axis", "keepdim": "keepdims"}

TENSOR_METHODS = {  # x.<PyTorch>(...) is x.<gpugrad>(...), same arguments
    "view": "reshape",
    "unsqueeze": "expand_dims",
    "permute": "transpose",
    "clamp": "clip",
    "pow": "__pow__",
    "matmul": "__matmul__",
    "nelement": "numel",
    "ndimension": "dim",
    "swapdims": "swapaxes",
}

FUNCTIONS = {  # gg.<PyTorch> is gg.<gpugrad>
    "cat": "concatenate",
    "concat": "concatenate",
    "clamp": "clip",
    "unsqueeze": "expand_dims",
    "permute": "transpose",
    "double": "float64",
    "long": "int64",
    "half": "float16",
}

_IN_PLACE = "x += y (or -=, *=, /=; under gg.no_grad() for a parameter)"
TENSOR_HINTS = {  # x.<PyTorch name> -> what to write in gpugrad
    "add_": _IN_PLACE,
    "sub_": _IN_PLACE,
    "mul_": _IN_PLACE,
    "div_": _IN_PLACE,
    "zero_": "x.data[...] = 0 (or p.grad = None to drop a gradient, as optimizers do)",
    "fill_": "x.data[...] = value",
    "copy_": "x.data[...] = y.data (under gg.no_grad())",
    "expand": "x.broadcast_to(shape) (NumPy's name; give every size, no -1)",
    "masked_fill": "gg.where(mask, value, x)",
    "type": "x.to(dtype), e.g. x.to(gg.float64) or x.to('float64')",
    "contiguous": "nothing: gpugrad's ops take any memory layout (x.clone() copies)",
    "softmax": "F.softmax(x, dim) with import gpugrad.functional as F",
    "log_softmax": "F.log_softmax(x, dim) with import gpugrad.functional as F",
    "std": "x.var(dim=...).sqrt() (or x.var(axis=..., ddof=1).sqrt())",
    "mm": "x @ y",
    "bmm": "x @ y",
    "is_cuda": "x.device != 'cpu' (x.device is 'cpu' or 'cuda:N')",
    "get_device": "x.device ('cpu' or 'cuda:N')",
    "new_zeros": "gg.zeros(shape, dtype=x.dtype, device=x.device)",
    "new_ones": "gg.ones(shape, dtype=x.dtype, device=x.device)",
    "new_tensor": "gg.tensor(data, dtype=x.dtype, device=x.device)",
    "detach_": "x = x.detach()",
}

MODULE_HINTS = {  # gg.<PyTorch name> -> what to write in gpugrad
    "float": "gg.float32 (PyTorch's torch.float)",
    "int": "gg.int32 (PyTorch's torch.int), or gg.int64 for class labels",
    "bool": "gg.bool_",
    "Size": "a tuple (x.shape is one)",
    "is_tensor": "isinstance(x, gg.Tensor)",
    "numel": "x.size (an int) or x.numel()",
    "set_default_dtype": "dtype=gg.float64 where tensors are made, and model.double() "
    "(gpugrad has no global default dtype: Python floats become float32)",
    "device": "a string: 'cpu', 'cuda', 'cuda:1'",
    "mm": "x @ y",
    "bmm": "x @ y",
    "softmax": "F.softmax(x, dim) with import gpugrad.functional as F",
    "randperm": "gg.tensor(np.random.permutation(n))",
}


# ----------------------------------------------------------------------------- dim= and keepdim=


def axis_keywords(fn):
    """Let ``fn``'s ``axis=`` / ``keepdims=`` also be spelled ``dim=`` / ``keepdim=``.

    Giving both spellings of one argument raises TypeError. A function that behaves as PyTorch
    does under PyTorch's spelling (max/min return (values, indices), var is unbiased) declares
    a keyword-only ``torch_spelling`` parameter: it is True when ``dim=`` or ``keepdim=`` was
    used.
    """
    params = list(inspect.signature(fn).parameters)
    positions = {ours: params.index(ours) for ours in KEYWORDS.values() if ours in params}
    flag = "torch_spelling" in params
    name = fn.__qualname__.replace("TensorMethods.", "Tensor.")

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "dim" in kwargs or "keepdim" in kwargs:
            for theirs, ours in KEYWORDS.items():
                if theirs not in kwargs:
                    continue
                if ours in kwargs or len(args) > positions.get(ours, len(args)):
                    raise TypeError(
                        f"{name}() got both {ours}= and {theirs}= ({theirs}= is PyTorch's "
                        f"spelling of {ours}=); pass one"
                    )
                kwargs[ours] = kwargs.pop(theirs)
            if flag:
                kwargs["torch_spelling"] = True
        return fn(*args, **kwargs)

    wrapper.__doc__ = (fn.__doc__ or "") + "\n\n(Also takes PyTorch's dim= and keepdim=.)"
    return wrapper


class ValuesIndices(NamedTuple):
    """What ``x.max(dim=...)`` / ``x.min(dim=...)`` return, as PyTorch's: the values and their
    positions along that axis (``.values``, ``.indices``, or unpack it)."""

    values: object
    indices: object


# ----------------------------------------------------------------------------- x.size


class ElementCount(int):
    """``x.size``: the number of elements, an int as in NumPy. Calling it, PyTorch's
    ``x.size(0)``, raises a TypeError that says to write ``x.shape[0]``."""

    __slots__ = ()

    def __call__(self, dim=None):
        if dim is None:
            fix = "x.shape for the dimensions (PyTorch's x.size())"
        else:
            fix = f"x.shape[{dim}] for the length of dimension {dim} (PyTorch's x.size({dim}))"
        raise TypeError(
            f"x.size is the number of elements, an int ({int(self)}), as in NumPy; it is not "
            f"a method here. Write {fix}, or x.numel() for the element count"
        )


# ----------------------------------------------------------------------------- misspellings


def attribute_error(owner: str, name: str, hints: dict, known) -> AttributeError:
    """The AttributeError for ``owner.name``: the hint for a PyTorch name, else close names."""
    message = f"{owner} has no attribute {name!r}"
    if name in hints:
        return AttributeError(f"{message}; in gpugrad write {hints[name]}")
    close = difflib.get_close_matches(name, [k for k in known if not k.startswith("_")], n=3)
    if close:
        message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return AttributeError(message)


# ----------------------------------------------------------------------------- .to(...)

_DTYPE_WORDS = {"float": "float32", "double": "float64", "half": "float16", "long": "int64"}


def to_arguments(what: str, target, dtype, device):
    """(device string or None, dtype or None) from ``.to``'s arguments: ``to("cuda")``,
    ``to(gg.float64)``, ``to("float64")``, ``to(device=..., dtype=...)``, ``to("cuda", dtype)``.

    A string is a dtype when it is a canonical NumPy dtype name ("float32", "int64", "bool");
    PyTorch's words for dtypes ("float", "double", "long") name the one to write instead.
    """
    if isinstance(target, str):
        as_dtype = _dtype_from_string(what, target)
        if as_dtype is None:
            if device is not None:
                raise TypeError(f"{what}: got the device twice ({target!r} and device={device!r})")
            device = target
        else:
            target = as_dtype
    if target is not None and not isinstance(target, str):
        if dtype is not None:
            raise TypeError(f"{what}: got the dtype twice ({target!r} and dtype={dtype!r})")
        dtype = target
    if isinstance(dtype, str):
        dtype = _dtype_from_string(what, dtype) or np.dtype(dtype)
    return device, (None if dtype is None else np.dtype(dtype))


def _dtype_from_string(what, s):
    if s in ("cpu", "auto") or s.startswith("cuda"):
        return None
    try:
        dt = np.dtype(s)
    except TypeError:
        dt = None
    if dt is not None and dt.name == s:
        return dt
    if s in _DTYPE_WORDS or dt is not None:
        name = _DTYPE_WORDS.get(s) or dt.name
        raise ValueError(
            f"{what}: dtype {s!r} is ambiguous (NumPy and PyTorch read it differently); write "
            f"{name!r} or gg.{name}"
        )
    return None
