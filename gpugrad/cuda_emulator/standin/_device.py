"""The emulated device's CUDA runtime objects: errors, devices, streams, events, memory.

One device, 0, with ``settings.sm_count`` multiprocessors and ``settings.memory_bytes`` of
memory. Launches run to completion when they are made, so streams order nothing and events
record the host clock. Memory comes from guarded buffers (``_memory``); a ``MemoryPointer`` is
a real address inside one, and the pools only count live bytes (nothing is cached).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import numpy as np

from .. import _memory
from .._config import settings


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
