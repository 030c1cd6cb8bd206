"""The emulated ``cupy.ndarray``, and the conversions every operation on it goes through.

An ndarray here is not a NumPy array (``type(a).__module__ == "cupy"``); it holds a NumPy view
of a guarded device buffer (``_memory.DeviceBuffer``), so kernels get a real address
(``a.data.ptr``) and NumPy does the arithmetic. As on a GPU, a host array is never converted
implicitly: ``numpy.asarray(a)`` raises, ``cupy.exp(host_array)`` raises, ``a.get()`` copies
to the host; reductions and scalar indexing return 0-d device arrays; no floating-point
warnings are emitted (CuPy has no error state).

``_call`` runs a NumPy function on device arrays: it unwraps them to their NumPy views, runs the
function, and wraps the results as new device arrays, or as views when they share memory with
an input. The operators and NumPy-named methods are attached by ``_methods.py``; ufuncs are in
``_ufunc.py``, the creation functions in ``_creation.py``.
"""

from __future__ import annotations

import operator

import numpy as np

from .. import _memory
from ..errors import NotEmulatedError
from ._device import Device, Memory, MemoryPointer

_SUPPORTED_KINDS = "biufc"
# Filled by standin/__init__.py and _ufunc.py: the cupy namespace (for __array_function__), the
# ufuncs (for __array_ufunc__), the cupy module and DLPack's exporter; kept here so this module
# imports none of the modules built on it.
NAMESPACE: dict = {}
UFUNCS: dict = {}
HOOKS: dict = {}


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)
    if dt.kind not in _SUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype {dt}")
    return dt


# ----------------------------------------------------------------------------- ndarray


class _Flags:
    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, arr):
        f = arr._a.flags
        self.c_contiguous, self.f_contiguous = f.c_contiguous, f.f_contiguous
        self.owndata = arr._base is None

    def __getitem__(self, name):
        key = {
            "C_CONTIGUOUS": "c_contiguous",
            "F_CONTIGUOUS": "f_contiguous",
            "OWNDATA": "owndata",
            "C": "c_contiguous",
            "F": "f_contiguous",
        }
        return getattr(self, key[name.upper()])

    def __repr__(self):
        return (
            f"  C_CONTIGUOUS : {self.c_contiguous}\n  F_CONTIGUOUS : {self.f_contiguous}\n"
            f"  OWNDATA : {self.owndata}"
        )


_IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
    "NumPy array explicitly."
)


class ndarray:
    """cupy.ndarray on the emulated device."""

    __slots__ = ("_a", "_buf", "_base", "__weakref__")
    __array_priority__ = 100.0
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        dt = _check_dtype(dtype)
        shape = (shape,) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
        if memptr is None:
            if strides is not None:
                raise NotEmulatedError("cupy.ndarray(..., strides=...) without memptr")
            made = _alloc(shape, dt, order, fill=True)
            self._a, self._buf, self._base = made._a, made._buf, None
            return
        buf = _memory.registry.find(memptr.ptr)
        if buf is None:
            raise ValueError(f"memptr 0x{memptr.ptr:x} is not in emulated device memory")
        self._a = np.ndarray(
            shape, dt, buffer=buf.bytes, offset=memptr.ptr - buf.base, strides=strides, order=order
        )
        self._buf, self._base = buf, None

    # ------------------------------------------------------------------ attributes
    shape = property(lambda self: self._a.shape)

    @shape.setter
    def shape(self, value):
        view = self._a.view()
        view.shape = value
        self._a = view

    strides = property(lambda self: self._a.strides)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: _Flags(self))
    base = property(lambda self: self._base)
    T = property(lambda self: _call(np.transpose, (self,)))
    mT = property(lambda self: _call(lambda a: a.mT, (self,)))

    @property
    def real(self):
        return _call(lambda a: a.real, (self,))

    @real.setter
    def real(self, value):
        self.real[...] = value

    @property
    def imag(self):
        return _call(lambda a: a.imag, (self,))

    @imag.setter
    def imag(self, value):
        self.imag[...] = value

    @property
    def data(self):
        ptr = self._a.__array_interface__["data"][0] if self._a.size else 0
        if self._buf is None:
            return MemoryPointer(Memory(None), 0)
        mem = Memory(self._buf)
        return MemoryPointer(mem, ptr - mem.ptr)

    @property
    def device(self):
        return Device(0)

    @property
    def __cuda_array_interface__(self):
        a = self._a
        return {
            "shape": a.shape,
            "typestr": a.dtype.str,
            "descr": a.dtype.descr,
            "data": (self.data.ptr, False),
            "strides": None if a.flags.c_contiguous else a.strides,
            "version": 3,
            "stream": 1,
        }

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return HOOKS["dlpack_export"](self, max_version=max_version, dl_device=dl_device, copy=copy)

    def toDlpack(self):
        return self.__dlpack__()

    # ------------------------------------------------------------------ host transfers
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            if out.shape != self.shape or out.dtype != self.dtype:
                raise ValueError(f"Shape mismatch. Expected shape {self.shape}, got {out.shape}")
            np.copyto(out, self._a)
            return out
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr)}")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        np.copyto(self._a, arr)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __bytes__(self):
        return bytes(self.get())

    # ------------------------------------------------------------------ conversions
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        dt = _check_dtype(dtype)
        if not copy and dt == self.dtype and (order in ("K", "A") or self._a.flags[order]):
            return self
        with np.errstate(all="ignore"):
            host = self._a.astype(dt, order=order, casting=casting or "unsafe", copy=False)
        return _copy_of(host, order=order if order in "CF" else _order_of(self._a))

    def copy(self, order="C"):
        return _copy_of(self._a, order=_order_of(self._a) if order in ("K", "A") else order)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):
        return (from_host, (self.get(),))

    def ptp(self, axis=None, out=None, keepdims=False):
        return _call(np.ptp, (self,), {"axis": axis, "out": out, "keepdims": keepdims})

    def scatter_add(self, slices, value):
        _call(np.add.at, (self, slices, value))

    def scatter_max(self, slices, value):
        _call(np.maximum.at, (self, slices, value))

    def scatter_min(self, slices, value):
        _call(np.minimum.at, (self, slices, value))

    def reduced_view(self, dtype=None):
        return self

    # ------------------------------------------------------------------ python protocol
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __complex__(self):
        return complex(self._a)

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec) if self._a.ndim == 0 else format(str(self), spec)

    def __getitem__(self, key):
        return _call(operator.getitem, (self, key), host_ok=True)

    def __setitem__(self, key, value):
        ctx = _Ctx(host_ok=True)
        k, v = _unwrap(key, ctx), _unwrap(value, ctx)
        with np.errstate(all="ignore"):
            self._a[k] = v

    def __delitem__(self, key):
        raise ValueError("cannot delete array elements")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        mine = UFUNCS.get(ufunc.__name__)
        if mine is None:
            return NotImplemented
        fn = mine if method == "__call__" else getattr(mine, method)
        return fn(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        mine = NAMESPACE.get(func.__name__)
        if mine is None:
            return NotImplemented
        return mine(*args, **kwargs)


ndarray.__module__ = "cupy"
ndarray.__qualname__ = ndarray.__name__ = "ndarray"

# ----------------------------------------------------------------------------- conversion


class _Ctx:
    """The device buffers and arrays an operation's inputs came from."""

    __slots__ = ("host_ok", "bufs", "objs")

    def __init__(self, host_ok=False):
        self.host_ok = host_ok
        self.bufs = []
        self.objs = {}


def _unwrap(x, ctx):
    t = type(x)
    if t is ndarray:
        if x._buf is not None:
            ctx.bufs.append((x._buf, x._base if x._base is not None else x))
        ctx.objs[id(x._a)] = x
        return x._a
    if t is np.ndarray:
        if ctx.host_ok:
            return x
        raise TypeError(f"Unsupported type {t}")
    if t is tuple or t is list:
        return t(_unwrap(v, ctx) for v in x)
    if t is dict:
        return {k: _unwrap(v, ctx) for k, v in x.items()}
    if isinstance(x, ndarray):  # pragma: no cover - ndarray is final in practice
        return _unwrap(x, ctx)
    return x


def _wrap(res, ctx):
    t = type(res)
    if t is np.ndarray:
        same = ctx.objs.get(id(res))
        if same is not None:
            return same
        if res.size:
            addr = res.__array_interface__["data"][0]
            for buf, owner in ctx.bufs:
                if buf.ptr <= addr < buf.ptr + buf.size:
                    return _view(res, buf, owner)
        return _copy_of(res)
    if isinstance(res, np.generic):
        return _copy_of(np.asarray(res))
    if t is tuple or t is list:
        return t(_wrap(r, ctx) for r in res)
    return res


def _call(fn, args, kwargs=None, host_ok=False):
    ctx = _Ctx(host_ok)
    a = _unwrap(args, ctx)
    k = _unwrap(kwargs, ctx) if kwargs else {}
    with np.errstate(all="ignore"):
        res = fn(*a, **k)
    return _wrap(res, ctx)


def _view(a, buf, owner):
    out = object.__new__(ndarray)
    out._a, out._buf, out._base = a, buf, owner
    return out


def _order_of(a) -> str:
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _alloc(shape, dtype, order="C", fill=False):
    dtype = _check_dtype(dtype)
    n = 1
    for s in shape:
        n *= int(s)
    nbytes = n * dtype.itemsize
    if nbytes == 0:
        out = _view(np.empty(shape, dtype, order=order), None, None)
        return out
    buf = _memory.allocate(nbytes, dtype, shape)
    a = np.ndarray(shape, dtype, buffer=buf.bytes, offset=buf.ptr - buf.base, order=order)
    if fill:
        bits = _memory.UNWRITTEN.get(dtype)
        if bits is not None:
            a.view(bits.dtype).fill(bits)
        else:
            buf.data()[:] = _memory.UNWRITTEN_BYTE
    return _view(a, buf, None)


def _copy_of(host, order=None):
    """A new device array holding a copy of a NumPy array (C order, or F when it is F)."""
    host = np.asarray(host)
    if host.dtype.kind not in _SUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype {host.dtype}")
    out = _alloc(host.shape, host.dtype, order or _order_of(host))
    if host.size:
        np.copyto(out._a, host)
    return out


def from_host(host) -> ndarray:
    """A device copy of a NumPy array (the emulator's host-to-device copy)."""
    return _copy_of(host)


def _ndarray_getattr(self, name):
    if name in type(self)._gg_names:
        raise NotEmulatedError(
            f"cupy.ndarray.{name} exists in CuPy but gpugrad's CUDA emulator does not implement "
            "it; run this on a GPU, or add it to gpugrad/cuda_emulator/standin/_methods.py"
        )
    raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")


ndarray._gg_names = frozenset()
ndarray.__getattr__ = _ndarray_getattr
