"""DLPack for the emulated device: capsules that say kDLCUDA and point at device buffers.

``export`` makes a legacy ("dltensor") capsule for an emulated array, ``import_`` reads one (or
takes an emulated array directly) into a view that shares the memory, as cupy.from_dlpack does.
"""

from __future__ import annotations

import ctypes
import threading
import weakref

import numpy as np

from .. import _memory
from ._ndarray import _alloc, _view, ndarray


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _Managed(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Managed))
_Managed._fields_ = [
    ("dl_tensor", _Tensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", _DELETER),
]

# The destructor gets the dying capsule: a raw pointer (a py_object would revive it).
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = (ctypes.c_void_p, ctypes.c_char_p, _CAPSULE_DESTRUCTOR)
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = (ctypes.py_object, ctypes.c_char_p)
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = (ctypes.py_object, ctypes.c_char_p)
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = (ctypes.py_object, ctypes.c_char_p)
_raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api)
)
_raw_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api)
)

_KDL_CUDA = 2
_CODES = {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}
_KINDS = {v: k for k, v in _CODES.items()}
_alive: dict[int, tuple] = {}  # managed tensor address -> what must outlive it
_lock = threading.Lock()


def _delete(managed_ptr):
    with _lock:
        _alive.pop(ctypes.addressof(managed_ptr.contents), None)


_deleter = _DELETER(_delete)


def _destruct(capsule):
    # A capsule nobody consumed still owns its tensor.
    if _raw_is_valid(capsule, b"dltensor"):
        ptr = _raw_get_pointer(capsule, b"dltensor")
        _delete(ctypes.cast(ptr, ctypes.POINTER(_Managed)))


_destructor = _CAPSULE_DESTRUCTOR(_destruct)


def export(arr: ndarray, max_version=None, dl_device=None, copy=None):
    if dl_device is not None and tuple(dl_device) != (_KDL_CUDA, 0):
        raise BufferError(f"the emulated device exports as (kDLCUDA, 0), not {dl_device}")
    if copy:
        arr = arr.copy()
    a = arr._a
    if a.dtype.kind not in _CODES:
        raise BufferError(f"DLPack cannot carry {a.dtype}")
    managed = _Managed()
    shape = (ctypes.c_int64 * max(1, a.ndim))(*a.shape)
    strides = (ctypes.c_int64 * max(1, a.ndim))(*(s // a.itemsize for s in a.strides))
    t = managed.dl_tensor
    t.data = arr.data.ptr or None
    t.device = _Device(_KDL_CUDA, 0)
    t.ndim = a.ndim
    t.dtype = _DType(_CODES[a.dtype.kind], a.itemsize * 8, 1)
    t.shape, t.strides, t.byte_offset = shape, strides, 0
    managed.deleter = _deleter
    with _lock:
        _alive[ctypes.addressof(managed)] = (managed, arr, shape, strides)
    return _api.PyCapsule_New(ctypes.addressof(managed), b"dltensor", _destructor)


def import_(x, copy=None):
    if isinstance(x, ndarray):
        return x.copy() if copy else _view(x._a, x._buf, x._base or x)
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"from_dlpack: {type(x).__name__} does not implement __dlpack__")
    kind, index = x.__dlpack_device__()
    if int(kind) not in (_KDL_CUDA, 3):
        raise BufferError(
            f"from_dlpack: the producer's data is on DLPack device type {int(kind)}, not on a "
            "CUDA device; copy host data with cupy.asarray"
        )
    capsule = x.__dlpack__()
    if not _api.PyCapsule_IsValid(capsule, b"dltensor"):
        raise BufferError("from_dlpack: expected an unconsumed 'dltensor' capsule")
    ptr = _api.PyCapsule_GetPointer(capsule, b"dltensor")
    managed = ctypes.cast(ptr, ctypes.POINTER(_Managed)).contents
    t = managed.dl_tensor
    kind_char = _KINDS.get(t.dtype.code)
    if kind_char is None or t.dtype.lanes != 1:
        raise BufferError(f"from_dlpack: unsupported DLPack dtype code {t.dtype.code}")
    dtype = np.dtype(f"{'?' if kind_char == 'b' else kind_char + str(t.dtype.bits // 8)}")
    shape = tuple(t.shape[i] for i in range(t.ndim))
    strides = None if not t.strides else tuple(t.strides[i] * dtype.itemsize for i in range(t.ndim))
    data = (t.data or 0) + t.byte_offset
    _api.PyCapsule_SetName(capsule, b"used_dltensor")
    if not data or 0 in shape:
        out = _alloc(shape, dtype)
    else:
        buf = _memory.registry.find(data)
        if buf is None or not buf.contains(data):
            raise BufferError(f"from_dlpack: 0x{data:x} is not memory of the emulated device")
        a = np.ndarray(shape, dtype, buffer=buf.bytes, offset=data - buf.base, strides=strides)
        out = _view(a, buf, None)
    deleter = managed.deleter
    mp = ctypes.pointer(managed)
    weakref.finalize(out, deleter, mp)
    return out.copy() if copy else out
