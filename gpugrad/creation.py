"""Factories (zeros, ones, randn, ...) and the free-function forms of ops (gg.where, ...)."""

from __future__ import annotations

import numpy as np

from . import ops, state
from .aliases import axis_keywords
from .device import device_of, parse_device, xp_for
from .dispatch import apply
from .tensor import Tensor, float32, tensor


def manual_seed(seed: int) -> None:
    """Seed gpugrad's random factories (randn, rand, layers' initialisation, dropout)."""
    state.random.generator = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    return state.random.generator


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape


def _make(array, device, requires_grad) -> Tensor:
    return Tensor(array, device=device, requires_grad=requires_grad)


def zeros(*shape, dtype=float32, device="cpu", requires_grad=False) -> Tensor:
    return _make(np.zeros(_shape(shape), dtype), device, requires_grad)


def ones(*shape, dtype=float32, device="cpu", requires_grad=False) -> Tensor:
    return _make(np.ones(_shape(shape), dtype), device, requires_grad)


def full(shape, value, dtype=float32, device="cpu", requires_grad=False) -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _make(np.full(shape, value, dtype), device, requires_grad)


def zeros_like(x: Tensor, requires_grad=False) -> Tensor:
    return Tensor._wrap(x._xp.zeros_like(x.data), x.device, requires_grad)


def ones_like(x: Tensor, requires_grad=False) -> Tensor:
    return Tensor._wrap(x._xp.ones_like(x.data), x.device, requires_grad)


def arange(*args, dtype=None, device="cpu") -> Tensor:
    return tensor(np.arange(*args, dtype=dtype), device=device)


def eye(n: int, dtype=float32, device="cpu") -> Tensor:
    return tensor(np.eye(n, dtype=dtype), device=device)


def randn(*shape, dtype=float32, device="cpu", requires_grad=False) -> Tensor:
    """Standard normal samples from gpugrad's generator (seed it with gg.manual_seed)."""
    return _make(default_rng().standard_normal(_shape(shape)).astype(dtype), device, requires_grad)


def rand(*shape, dtype=float32, device="cpu", requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _make(default_rng().random(_shape(shape)).astype(dtype), device, requires_grad)


def randint(low: int, high: int, shape, device="cpu") -> Tensor:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return tensor(default_rng().integers(low, high, shape, dtype=np.int64), device=device)


def from_dlpack(x) -> Tensor:
    """A tensor sharing memory with any DLPack producer (a PyTorch, JAX, NumPy or CuPy array).

    >>> import numpy as np
    >>> from_dlpack(np.arange(3.0)).tolist()
    [0.0, 1.0, 2.0]
    """
    kind, index = x.__dlpack_device__()
    if int(kind) == 1:  # kDLCPU
        return Tensor._wrap(np.from_dlpack(x), "cpu")
    if int(kind) in (2, 3):  # kDLCUDA, kDLCUDAHost
        device = parse_device(f"cuda:{int(index)}")  # imports CuPy, or says why it cannot
        return Tensor._wrap(xp_for(device).from_dlpack(x), device)
    raise TypeError(f"from_dlpack: DLPack device type {int(kind)} is not supported (cpu or cuda)")


def as_device_array(array):
    """Wrap an existing array without copying (used by data loaders and kernels)."""
    return Tensor._wrap(array, device_of(array))


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with a NumPy array (PyTorch's torch.from_numpy): writes to
    either show in the other, and the dtype stays as it is.

    >>> a = np.zeros(2)
    >>> t = from_numpy(a)
    >>> a[0] = 5.0
    >>> t.tolist(), t.dtype
    ([5.0, 0.0], dtype('float64'))
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}; use "
            "gg.tensor(data) for other data"
        )
    return Tensor._wrap(array, "cpu")


# ----------------------------------------------------------------------------- free functions


def _tensors(*xs):
    """Lift scalars/arrays to tensors on the device and dtype of the first tensor among xs."""
    like = next((x for x in xs if isinstance(x, Tensor)), None)
    if like is None:
        return tuple(tensor(x) for x in xs)
    return tuple(like._operand(x) for x in xs)


def _unary(fn):
    def f(x):
        return apply(fn, _tensors(x), {})

    f.__name__ = fn.name
    f.__doc__ = fn.__doc__
    return f


exp, log, sqrt, abs, tanh, sigmoid, relu = (
    _unary(o) for o in (ops.exp, ops.log, ops.sqrt, ops.abs, ops.tanh, ops.sigmoid, ops.relu)
)


def maximum(x, y) -> Tensor:
    """Elementwise maximum; ties split the gradient evenly."""
    return apply(ops.maximum, _tensors(x, y), {})


def minimum(x, y) -> Tensor:
    return apply(ops.minimum, _tensors(x, y), {})


def where(condition, x, y) -> Tensor:
    """x where condition holds, else y; condition gets no gradient."""
    x, y = _tensors(x, y)
    cond = condition
    if not isinstance(cond, Tensor):
        cond = tensor(np.asarray(condition), device=x.device)
    return apply(ops.where, (cond, x, y), {})


def clip(x, min=None, max=None) -> Tensor:
    return _tensors(x)[0].clip(min, max)


def matmul(x, y) -> Tensor:
    return apply(ops.matmul, _tensors(x, y), {})


@axis_keywords
def concatenate(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis (numpy.concatenate)."""
    return apply(ops.concatenate, _tensors(*tensors), {"axis": axis})


@axis_keywords
def stack(tensors, axis: int = 0) -> Tensor:
    """Join tensors along a new axis (numpy.stack)."""
    return apply(ops.stack, _tensors(*tensors), {"axis": axis})


@axis_keywords
def sum(x, axis=None, keepdims=False) -> Tensor:
    return _tensors(x)[0].sum(axis, keepdims)


@axis_keywords
def mean(x, axis=None, keepdims=False) -> Tensor:
    return _tensors(x)[0].mean(axis, keepdims)


def reshape(x, shape) -> Tensor:
    return _tensors(x)[0].reshape(shape)


def transpose(x, axes=None) -> Tensor:
    return _tensors(x)[0].transpose(axes) if axes else _tensors(x)[0].T


def broadcast_to(x, shape) -> Tensor:
    return _tensors(x)[0].broadcast_to(shape)


@axis_keywords
def expand_dims(x, axis) -> Tensor:
    return _tensors(x)[0].expand_dims(axis)


@axis_keywords
def squeeze(x, axis=None, *, torch_spelling=False) -> Tensor:
    x = _tensors(x)[0]
    return x.squeeze(dim=axis) if torch_spelling else x.squeeze(axis)
