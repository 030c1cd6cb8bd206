"""The emulated ``cupy.ndarray`` and what it rests on: device memory, devices, streams, pools.

An ndarray here is not a NumPy array (``type(a).__module__ == "cupy"``); it holds a NumPy view
of a guarded device buffer (``_memory.DeviceBuffer``), so kernels get a real address
(``a.data.ptr``) and NumPy does the arithmetic. As on a GPU, a host array is never converted
implicitly: ``numpy.asarray(a)`` raises, ``cupy.exp(host_array)`` raises, ``a.get()`` copies
to the host; reductions and scalar indexing return 0-d device arrays; no floating-point
warnings are emitted (CuPy has no error state).
"""

from __future__ import annotations

import operator
import time
from contextlib import contextmanager

import numpy as np

from .. import _memory
from .._config import settings
from ..errors import NotEmulatedError

_SUPPORTED_KINDS = "biufc"
# Filled by standin/__init__.py: the cupy namespace (for __array_function__), the cupy module and
# DLPack's exporter; kept here so this module imports none of its siblings.
NAMESPACE: dict = {}
HOOKS: dict = {}


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError (``status`` is the error code, 0 when unknown)."""

    def __init__(self, status, message=None):
        self.status = status if isinstance(status, int) else 0
        super().__init__(message if message is not None else str(status))


class CUDADriverError(RuntimeError):
    """cupy.cuda.driver.CUDADriverError."""

    def __init__(self, status, message=None):
        self.status = status if isinstance(status, int) else 0
        super().__init__(message if message is not None else str(status))


class CompileException(Exception):
    """cupy.cuda.compiler.CompileException: here g++'s diagnostics instead of NVRTC's."""

    def __init__(self, msg, source="", name="", options=(), backend="g++ (CUDA emulator)"):
        self._msg, self.source, self.name = msg, source, name
        self.options, self.backend = options, backend
        super().__init__(msg)

    def get_message(self):
        return self._msg

    def dump(self, f):
        f.write(self.source)


CUDARuntimeError.__module__ = "cupy_backends.cuda.api.runtime"
CUDADriverError.__module__ = "cupy_backends.cuda.api.driver"
CompileException.__module__ = "cupy.cuda.compiler"


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype) if dtype is not None else np.dtype(np.float64)
    if dt.kind not in _SUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype {dt}")
    return dt


# ----------------------------------------------------------------------------- memory


class Memory:
    """cupy.cuda.Memory: one allocation."""

    def __init__(self, buf):
        self._buf = buf
        self.ptr = buf.ptr if buf is not None else 0
        self.size = buf.size if buf is not None else 0
        self.device_id = 0

    @property
    def device(self):
        return Device(0)


class MemoryPointer:
    """cupy.cuda.MemoryPointer: a device address inside a Memory."""

    def __init__(self, mem, offset):
        self.mem = mem
        self.ptr = (mem.ptr + offset) if mem is not None else 0
        self.device_id = 0

    @property
    def device(self):
        return Device(0)

    def __int__(self):
        return self.ptr

    def __add__(self, offset):
        return MemoryPointer(self.mem, self.ptr - self.mem.ptr + int(offset))

    def copy_from_device(self, src, size):
        _copy_bytes(src.ptr, self.ptr, size)

    def copy_to_host(self, mem, size):
        buf = _memory.registry.find(self.ptr)
        np.frombuffer((np.ctypeslib.as_array(mem, (size,))), np.uint8)[:] = buf.view(
            self.ptr, self.ptr + size
        )

    def memset(self, value, size):
        buf = _memory.registry.find(self.ptr)
        buf.view(self.ptr, self.ptr + size)[:] = value

    def __repr__(self):
        return f"<MemoryPointer 0x{self.ptr:x} device=0 mem={self.mem!r}>"


def _copy_bytes(src, dst, size):
    a, b = _memory.registry.find(src), _memory.registry.find(dst)
    if a is None or b is None:
        raise CUDARuntimeError(1, "cudaErrorInvalidValue: memcpy between non-device addresses")
    b.view(dst, dst + size)[:] = a.view(src, src + size)


for _cls in (Memory, MemoryPointer):
    _cls.__module__ = "cupy.cuda.memory"


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
        return (array, (self.get(),))

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
        mine = _UFUNCS.get(ufunc.__name__)
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


def _operand(x) -> bool:
    if isinstance(x, ndarray | np.generic | int | float | complex | bool):
        return True
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    return False


def _binary(fn, reflected=False):
    if reflected:

        def op(self, other):
            return _call(fn, (other, self)) if _operand(other) else NotImplemented

    else:

        def op(self, other):
            return _call(fn, (self, other)) if _operand(other) else NotImplemented

    return op


def _inplace(ufunc):
    def op(self, other):
        if not _operand(other):
            return NotImplemented
        ctx = _Ctx()
        o = _unwrap(other, ctx)
        with np.errstate(all="ignore"):
            ufunc(self._a, o, out=self._a)
        return self

    return op


_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "matmul": operator.matmul,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
    "divmod": divmod,
}
for _name, _fn in _BINARY.items():
    setattr(ndarray, f"__{_name}__", _binary(_fn))
    setattr(ndarray, f"__r{_name}__", _binary(_fn, reflected=True))
for _name, _fn in {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}.items():
    setattr(ndarray, f"__{_name}__", _binary(_fn))
for _name, _uf in {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.true_divide,
    "floordiv": np.floor_divide,
    "mod": np.remainder,
    "pow": np.power,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "lshift": np.left_shift,
    "rshift": np.right_shift,
}.items():
    setattr(ndarray, f"__i{_name}__", _inplace(_uf))
for _name, _fn in {
    "neg": operator.neg,
    "pos": operator.pos,
    "abs": operator.abs,
    "invert": operator.invert,
}.items():
    setattr(ndarray, f"__{_name}__", (lambda fn: lambda self: _call(fn, (self,)))(_fn))


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


# ----------------------------------------------------------------------------- devices

_current_device = 0


def _attributes() -> dict:
    return {
        "MultiProcessorCount": settings.sm_count,
        "MaxThreadsPerBlock": 1024,
        "MaxBlockDimX": 1024,
        "MaxBlockDimY": 1024,
        "MaxBlockDimZ": 64,
        "MaxGridDimX": 2**31 - 1,
        "MaxGridDimY": 65535,
        "MaxGridDimZ": 65535,
        "MaxSharedMemoryPerBlock": 48 * 1024,
        "MaxSharedMemoryPerBlockOptin": 227 * 1024,
        "WarpSize": 32,
        "ComputeCapabilityMajor": 9,
        "ComputeCapabilityMinor": 0,
        "MaxThreadsPerMultiProcessor": 2048,
        "TotalConstantMemory": 65536,
        "ClockRate": 1_000_000,
        "L2CacheSize": 50 << 20,
    }


class Device:
    """cupy.cuda.Device. The emulated machine has one device, 0."""

    def __init__(self, device=None):
        self._id = _current_device if device is None else int(device)
        self._saved = []

    id = property(lambda self: self._id)

    def _check(self):
        if self._id != 0:
            raise CUDARuntimeError(
                101,
                f"cudaErrorInvalidDevice: invalid device ordinal (device {self._id}; the "
                "emulated machine has one device, 0)",
            )

    @property
    def attributes(self):
        self._check()
        return _attributes()

    @property
    def compute_capability(self):
        self._check()
        return "90"

    @property
    def mem_info(self):
        self._check()
        total = settings.memory_bytes
        return (total - _memory.registry.used, total)

    @property
    def pci_bus_id(self):
        return "0000:00:00.0"

    def synchronize(self):
        self._check()

    def use(self):
        global _current_device
        self._check()
        _current_device = self._id

    def __enter__(self):
        global _current_device
        self._check()
        self._saved.append(_current_device)
        _current_device = self._id
        return self

    def __exit__(self, *exc):
        global _current_device
        _current_device = self._saved.pop()

    def __int__(self):
        return self._id

    def __eq__(self, other):
        return isinstance(other, Device) and other._id == self._id

    def __hash__(self):
        return hash(("Device", self._id))

    def __repr__(self):
        return f"<CUDA Device {self._id}>"


class Stream:
    """cupy.cuda.Stream. Launches run to completion when made, so streams order nothing."""

    null = None  # set below

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = 0 if null else id(self)
        self.is_non_blocking = non_blocking
        self.ptds = ptds
        self.priority = priority or 0
        self._saved = []

    done = property(lambda self: True)

    def synchronize(self):
        pass

    def use(self):
        global _current_stream
        _current_stream = self
        return self

    def __enter__(self):
        global _current_stream
        self._saved.append(_current_stream)
        _current_stream = self
        return self

    def __exit__(self, *exc):
        global _current_stream
        _current_stream = self._saved.pop()

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event):
        pass

    def add_callback(self, callback, arg):
        callback(self, 0, arg)

    def launch_host_func(self, callback, arg):
        callback(arg)

    def is_capturing(self):
        return False

    def begin_capture(self, mode=None):
        raise CUDARuntimeError(
            900,
            "cudaErrorStreamCaptureUnsupported: stream capture (CUDA graphs) is not "
            "emulated; run the captured work eagerly",
        )

    def end_capture(self):
        raise CUDARuntimeError(901, "cudaErrorStreamCaptureInvalidated: no capture in progress")

    def __repr__(self):
        return f"<Stream {self.ptr} (device 0)>"


Stream.null = Stream(null=True)
_current_stream = Stream.null


def get_current_stream(device_id=None):
    return _current_stream


class Event:
    """cupy.cuda.Event: records the host clock (launches are synchronous here)."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.disable_timing = disable_timing
        self._t = None
        self.ptr = id(self)

    def record(self, stream=None):
        self._t = time.perf_counter()

    def synchronize(self):
        pass

    done = property(lambda self: True)


def get_elapsed_time(start_event, end_event):
    if start_event._t is None or end_event._t is None:
        raise CUDARuntimeError(600, "cudaErrorNotReady: an event was never recorded")
    return (end_event._t - start_event._t) * 1000.0


for _cls in (Device, Stream, Event):
    _cls.__module__ = "cupy.cuda"


class MemoryPool:
    """cupy.cuda.MemoryPool: live device bytes; no caching, so nothing to free."""

    def __init__(self, allocator=None):
        self._limit = 0

    def malloc(self, size):
        buf = _memory.allocate(max(int(size), 1)) if size else None
        return MemoryPointer(Memory(buf), 0)

    def used_bytes(self):
        return _memory.registry.used

    def total_bytes(self):
        return _memory.registry.used

    def free_bytes(self):
        return 0

    def n_free_blocks(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def free_all_free(self):
        pass

    def set_limit(self, size=None, fraction=None):
        if fraction is not None:
            size = int(settings.memory_bytes * fraction)
        self._limit = int(size or 0)
        _memory.pool_limit = self._limit

    def get_limit(self):
        return self._limit


class PinnedMemoryPool:
    def __init__(self, allocator=None):
        pass

    def free_all_blocks(self):
        pass

    def n_free_blocks(self):
        return 0


MemoryPool.__module__ = PinnedMemoryPool.__module__ = "cupy.cuda.memory"
_default_pool = MemoryPool()
_default_pinned_pool = PinnedMemoryPool()


def get_default_memory_pool():
    return _default_pool


def get_default_pinned_memory_pool():
    return _default_pinned_pool


@contextmanager
def using_allocator(allocator=None):
    """Allocations on the emulated device always come from guarded buffers."""
    yield


# ----------------------------------------------------------------------------- ufuncs


class ufunc:
    """cupy.ufunc over NumPy's ufunc of the same name."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.name = self.__name__ = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.types = np_ufunc.types

    def __call__(self, *args, **kwargs):
        return _call(self._u, args, kwargs)

    def reduce(self, *args, **kwargs):
        return _call(self._u.reduce, args, kwargs)

    def accumulate(self, *args, **kwargs):
        return _call(self._u.accumulate, args, kwargs)

    def reduceat(self, *args, **kwargs):
        return _call(self._u.reduceat, args, kwargs)

    def outer(self, *args, **kwargs):
        return _call(self._u.outer, args, kwargs)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"{self.name}.at: the first argument must be a cupy.ndarray")
        ctx = _Ctx()
        target, values = _unwrap(a, ctx), _unwrap(b, ctx)
        index = _unwrap(indices, _Ctx(host_ok=True))  # host index arrays are fine, as in CuPy
        with np.errstate(all="ignore"):
            self._u.at(target, index) if b is None else self._u.at(target, index, values)

    def __repr__(self):
        return f"<ufunc '{self.name}'>"


ufunc.__module__ = "cupy"
_UFUNCS: dict[str, ufunc] = {}


def make_ufunc(name: str) -> ufunc:
    u = _UFUNCS.get(name)
    if u is None:
        u = _UFUNCS[name] = ufunc(getattr(np, name))
    return u


# ----------------------------------------------------------------------------- creation


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


# ----------------------------------------------------------------------------- methods

_NOT_METHODS = {"flat"}  # NumPy's flatiter would hand out host memory


def _method(fn):
    def m(self, *args, **kwargs):
        return _call(fn, (self, *args), kwargs)

    m.__name__ = fn.__name__
    return m


def install_methods(names) -> None:
    """Give ndarray every CuPy method NumPy has with the same meaning (sum, reshape, ...);
    other CuPy names raise NotEmulatedError, names CuPy lacks AttributeError."""
    for name in names:
        if name.startswith("_") or name in _NOT_METHODS or name in ndarray.__dict__:
            continue
        fn = getattr(np.ndarray, name, None)
        if callable(fn):
            setattr(ndarray, name, _method(fn))
    ndarray._gg_names = frozenset(names)


def _ndarray_getattr(self, name):
    if name in type(self)._gg_names:
        raise NotEmulatedError(
            f"cupy.ndarray.{name} exists in CuPy but gpugrad's CUDA emulator does not implement "
            "it; run this on a GPU, or add it to gpugrad/cuda_emulator/standin/_core.py"
        )
    raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")


ndarray._gg_names = frozenset()
ndarray.__getattr__ = _ndarray_getattr
