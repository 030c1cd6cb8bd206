"""The creation functions of the emulated ``cupy`` that differ from NumPy's: every result is a
new device array (or, where CuPy's would be, a view); host data is copied in explicitly."""

from __future__ import annotations

import numpy as np

from .. import _memory
from ._ndarray import (
    _alloc,
    _call,
    _check_dtype,
    _copy_of,
    _Ctx,
    _order_of,
    _unwrap,
    _view,
    ndarray,
)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, blocking=False):
    if isinstance(obj, ndarray):
        dt = obj.dtype if dtype is None else _check_dtype(dtype)
        out = obj if dt == obj.dtype else obj.astype(dt)
        if copy and out is obj:
            out = obj.copy(order="K" if order in ("K", "A") else order)
        if ndmin > out.ndim:
            out = out.reshape((1,) * (ndmin - out.ndim) + out.shape)
        return out
    if not isinstance(obj, np.ndarray) and hasattr(obj, "__cuda_array_interface__"):
        view = _from_cai(obj)
        return array(view, dtype=dtype, copy=copy, order=order, ndmin=ndmin)
    ctx = _Ctx(host_ok=True)
    host = np.array(_unwrap(obj, ctx), dtype=dtype, order=order, ndmin=ndmin)
    if host.dtype.kind == "O":
        raise ValueError(f"Unsupported dtype {host.dtype}")
    return _copy_of(host, order="F" if order == "F" else None)


def asarray(a, dtype=None, order=None, blocking=False):
    return array(a, dtype=dtype, copy=False, order=order or "K")


def asanyarray(a, dtype=None, order=None, blocking=False):
    return asarray(a, dtype, order)


def ascontiguousarray(a, dtype=None):
    out = asarray(a, dtype)
    return out if out.flags.c_contiguous else out.copy(order="C")


def asfortranarray(a, dtype=None):
    out = asarray(a, dtype)
    return out if out.flags.f_contiguous else out.copy(order="F")


def copy(a, order="K"):
    if not isinstance(a, ndarray):
        raise TypeError(f"Unsupported type {type(a)}")
    return a.copy(order=order)


def empty(shape, dtype=float, order="C"):
    shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
    return _alloc(shape, dtype, order, fill=True)


def empty_like(prototype, dtype=None, order="K", subok=None, shape=None):
    if not isinstance(prototype, ndarray):
        raise TypeError(f"Unsupported type {type(prototype)}")
    dt = prototype.dtype if dtype is None else dtype
    if order in ("K", "A"):
        order = _order_of(prototype._a)
    return empty(prototype.shape if shape is None else shape, dt, order)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    if hasattr(a, "__cuda_array_interface__"):
        return _from_cai(a).get(order=order, out=out)
    host = np.asarray(a, order=order)
    if out is not None:
        out[...] = host
        return out
    return host


def _from_cai(obj) -> ndarray:
    cai = obj.__cuda_array_interface__
    ptr = cai["data"][0]
    dtype = np.dtype(cai["typestr"])
    shape = tuple(cai["shape"])
    if ptr == 0:
        return _alloc(shape, dtype)
    buf = _memory.registry.find(ptr)
    if buf is None or not buf.contains(ptr):
        raise TypeError(
            f"__cuda_array_interface__ of {type(obj).__name__} points at 0x{ptr:x}, which is not "
            "memory of the emulated device"
        )
    strides = cai.get("strides")
    a = np.ndarray(shape, dtype, buffer=buf.bytes, offset=ptr - buf.base, strides=strides)
    return _view(a, buf, None)


def count_nonzero(a, axis=None):
    res = _call(np.count_nonzero, (a,), {"axis": axis})
    return res if isinstance(res, ndarray) else _copy_of(np.asarray(res, np.intp))
