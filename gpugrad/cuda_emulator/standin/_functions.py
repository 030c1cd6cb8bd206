"""The ``cupy`` namespace of the emulated device, generated from CuPy's list of names.

A CuPy name that NumPy also has with the same meaning (``exp``, ``matmul``, ``where``, dtypes,
constants) is NumPy's function run on the device arrays' memory: inputs must be device arrays or
scalars (a NumPy array raises TypeError, as in CuPy), results land in new device buffers, views
stay views. Names with CuPy-specific behaviour are written out in ``_creation`` and here.
"""

from __future__ import annotations

import contextlib
import functools
import math
import types

import numpy as np

from . import _creation, _device, _ufunc
from ._ndarray import HOOKS, _call, from_host, ndarray

_UNSAFE_NUMPY = {
    # NumPy names CuPy has whose NumPy versions do something else or touch host state.
    "ndarray",
    "array",
    "asarray",
    "asanyarray",
    "ascontiguousarray",
    "asfortranarray",
    "copy",
    "empty",
    "empty_like",
    "count_nonzero",
    "ufunc",
    "random",
    "linalg",
    "fft",
    "testing",
    "lib",
    "polynomial",
    "typing",
    "exceptions",
    "show_config",
    "errstate",
    "seterr",
    "geterr",
    "from_dlpack",
    "fromfile",
    "fromfunction",
    "fromiter",
    "frombuffer",
    "fromstring",
    "load",
    "save",
    "savez",
    "savez_compressed",
    "loadtxt",
    "savetxt",
    "genfromtxt",
    "asmatrix",
    "get_printoptions",
}


def generic(name: str, fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _call(fn, args, kwargs)

    call.__module__ = "cupy"
    return call


def get_array_module(*args):
    for a in args:
        if isinstance(a, ndarray) or hasattr(a, "__cuda_array_interface__"):
            return HOOKS["cupy"]
    return np


def fuse(*args, **kwargs):
    """cupy.fuse: kernel fusion is an optimisation; the emulated function runs unfused."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


def memoize(for_each_device=False):
    return functools.lru_cache(maxsize=None)


def is_available():
    return True


def show_config(*, _full=False):
    from .._config import settings

    print(
        f"gpugrad CUDA emulator: 1 device, {settings.sm_count} SMs, {settings.orders} "
        f"thread/block orders per launch, cache {settings.cache_dir}"
    )


def from_dlpack(x, *, device=None, copy=None):
    from . import _dlpack

    return _dlpack.import_(x, copy=copy)


EXPLICIT = {
    "ndarray": ndarray,
    "ufunc": _ufunc.ufunc,
    "array": _creation.array,
    "asarray": _creation.asarray,
    "asanyarray": _creation.asanyarray,
    "ascontiguousarray": _creation.ascontiguousarray,
    "asfortranarray": _creation.asfortranarray,
    "copy": _creation.copy,
    "empty": _creation.empty,
    "empty_like": _creation.empty_like,
    "asnumpy": _creation.asnumpy,
    "count_nonzero": _creation.count_nonzero,
    "get_array_module": get_array_module,
    "get_default_memory_pool": _device.get_default_memory_pool,
    "get_default_pinned_memory_pool": _device.get_default_pinned_memory_pool,
    "fuse": fuse,
    "memoize": memoize,
    "is_available": is_available,
    "show_config": show_config,
    "from_dlpack": from_dlpack,
    "fromDlpack": from_dlpack,
}


def _returns_array(name):
    # NumPy answers these with a Python bool; CuPy with a 0-d device array.
    fn = getattr(np, name)

    def call(*args, **kwargs):
        res = _call(fn, args, kwargs)
        return res if isinstance(res, ndarray) else from_host(np.asarray(res))

    return call


def build_namespace(names) -> dict:
    """name -> object for every CuPy top-level name the emulator implements."""
    from ._raw import RawKernel, RawModule

    out = {"RawModule": RawModule, "RawKernel": RawKernel}
    for name in names:
        if name in EXPLICIT:
            out[name] = EXPLICIT[name]
            continue
        if name in _UNSAFE_NUMPY or name in out or not hasattr(np, name):
            continue
        obj = getattr(np, name)
        if isinstance(obj, types.ModuleType):
            continue
        if name in ("allclose", "array_equal", "array_equiv"):
            out[name] = _returns_array(name)
        elif isinstance(obj, np.ufunc):
            out[name] = _ufunc.make_ufunc(name)
        elif isinstance(obj, type) or not callable(obj):
            out[name] = obj  # dtypes, scalar types, finfo/iinfo, constants
        else:
            out[name] = generic(name, obj)
    return out


def namespace_from(np_module, names, exclude=()) -> dict:
    """Generic wrappers for the names of a NumPy submodule (linalg, fft)."""
    out = {}
    for name in names:
        if name in exclude or not hasattr(np_module, name):
            continue
        obj = getattr(np_module, name)
        if isinstance(obj, types.ModuleType):
            continue
        out[name] = generic(name, obj) if callable(obj) and not isinstance(obj, type) else obj
    return out


def random_namespace(names) -> dict:
    """cupy.random's legacy functions on a private NumPy RandomState (never NumPy's global
    one), results on the device. Generators and distributions objects are not emulated."""
    state = np.random.RandomState(0)
    out = {}
    for name in names:
        if name in (
            "RandomState",
            "Generator",
            "default_rng",
            "get_random_state",
            "set_random_state",
            "BitGenerator",
            "XORWOW",
            "MRG32k3a",
            "Philox4x3210",
        ):
            continue
        fn = getattr(state, name, None)
        if fn is None or not callable(fn):
            continue
        if name == "seed":
            out[name] = lambda seed=None, _s=state: _s.seed(seed)
            continue
        out[name] = generic(name, fn)
    return out


# cupyx -------------------------------------------------------------------------------


def scatter_add(a, slices, value):
    _call(np.add.at, (a, slices, value))


def scatter_max(a, slices, value):
    _call(np.maximum.at, (a, slices, value))


def scatter_min(a, slices, value):
    _call(np.minimum.at, (a, slices, value))


_linalg_mode = {"linalg": "ignore"}


@contextlib.contextmanager
def errstate(*, linalg=None):
    """cupyx.errstate: only the ``linalg`` mode exists in CuPy (no floating-point modes)."""
    saved = dict(_linalg_mode)
    if linalg is not None:
        _linalg_mode["linalg"] = linalg
    try:
        yield
    finally:
        _linalg_mode.update(saved)


def seterr(*, linalg=None):
    old = dict(_linalg_mode)
    if linalg is not None:
        _linalg_mode["linalg"] = linalg
    return old


def geterr():
    return dict(_linalg_mode)


def rsqrt(x, out=None):
    return _call(lambda a: 1 / np.sqrt(a), (x,))


def empty_pinned(shape, dtype=float, order="C"):
    return np.empty(shape, dtype, order)


def zeros_pinned(shape, dtype=float, order="C"):
    return np.zeros(shape, dtype, order)


def empty_like_pinned(a, dtype=None, order="K", subok=None, shape=None):
    return np.empty_like(a, dtype=dtype, order=order, shape=shape)


def zeros_like_pinned(a, dtype=None, order="K", subok=None, shape=None):
    return np.zeros_like(a, dtype=dtype, order=order, shape=shape)


CUPYX = {
    "scatter_add": scatter_add,
    "scatter_max": scatter_max,
    "scatter_min": scatter_min,
    "errstate": errstate,
    "seterr": seterr,
    "geterr": geterr,
    "rsqrt": rsqrt,
    "empty_pinned": empty_pinned,
    "zeros_pinned": zeros_pinned,
    "empty_like_pinned": empty_like_pinned,
    "zeros_like_pinned": zeros_like_pinned,
}


def special_erf(x):
    """cupyx.scipy.special.erf: the C library's erf per element (NumPy has none), float32 for
    float16 and float32 input, float64 for the rest, as CuPy's ufunc resolves its types."""

    def erf(a):
        a = np.asarray(a)
        dtype = np.float32 if a.dtype in (np.float16, np.float32) else np.float64
        return np.frompyfunc(math.erf, 1, 1)(a).astype(dtype)

    return _call(erf, (x,))
