"""Device memory of the emulated GPU: guarded buffers in host memory.

Each allocation is its own mapping: an inaccessible guard page, the data pages, another guard
page. The data starts 256-byte aligned, as CuPy's allocations do, and ends as close to the
trailing guard page as that alignment allows (less than 256 bytes of padding), so reading or
writing past the end faults. The padding before and after the data holds a NaN pattern: a read
of it turns a float result into NaN, and a write into it is found by ``check_padding`` after
every launch. ``cupy.empty`` fills new float arrays with a NaN whose payload marks memory no
one wrote (``UNWRITTEN``), so an output element a kernel forgot shows up in the comparison.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import os
import sys
import threading
import weakref

import numpy as np

from ._config import settings

PAGE = mmap.PAGESIZE
ALIGN = 256  # CuPy's allocations are at least 256-byte aligned
POISON = 0xFFF70000  # the padding's 32-bit pattern: NaN as float32 and, doubled, as float64;
# its low 16 bits differ per buffer, so a value read from one buffer's padding and written
# into another's is still a change there
# cupy.empty's fill: quiet NaNs with a recognisable payload ("never written").
UNWRITTEN = {
    np.dtype(np.float16): np.uint16(0x7EAD),
    np.dtype(np.float32): np.uint32(0x7FDEAD00),
    np.dtype(np.float64): np.uint64(0x7FFDEAD0DEAD0000),
}
UNWRITTEN_BYTE = 0xA5  # integer and bool arrays from cupy.empty

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.mprotect.restype = ctypes.c_int
_PROT_NONE = 0


def _pattern(word: int) -> np.ndarray:
    """The pattern laid out from an address that is a multiple of 4; slice it by address % 4."""
    return np.frombuffer(np.full(PAGE // 4 + 2, word, np.uint32).tobytes(), np.uint8)


class OutOfMemoryError(MemoryError):
    """cupy.cuda.memory.OutOfMemoryError: the request in ``_size``, the pool's use in
    ``_total``, the limit in ``_limit`` (as CuPy's)."""

    def __init__(self, size, total, limit=0):
        self._size, self._total, self._limit = size, total, limit
        msg = f"Out of memory allocating {size:,} bytes (allocated so far: {total:,} bytes"
        msg += f", limit set to: {limit:,} bytes)." if limit else ")."
        super().__init__(msg)


OutOfMemoryError.__module__ = "cupy.cuda.memory"


def _site() -> str:
    """The first caller outside the emulator package, as path:line."""
    here = os.path.dirname(__file__)
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(here):
        f = f.f_back
    if f is None:
        return "?"
    return f"{_short(f.f_code.co_filename)}:{f.f_lineno}"


def _short(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


class DeviceBuffer:
    """One device allocation. ``ptr`` is the device address a kernel gets."""

    __slots__ = (
        "mm",
        "bytes",
        "base",
        "lo",
        "hi",
        "ptr",
        "size",
        "serial",
        "site",
        "dtype",
        "shape",
        "poison",
        "__weakref__",
    )

    _serials = iter(range(1, 1 << 62))

    def __init__(self, size: int, dtype=None, shape=None):
        pages = -(-(size + ALIGN - 1) // PAGE)
        total = (pages + 2) * PAGE
        self.mm = mmap.mmap(-1, total, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.bytes = np.frombuffer(self.mm, np.uint8)
        self.base = self.bytes.ctypes.data
        self.lo = self.base + PAGE
        self.hi = self.lo + pages * PAGE
        self.ptr = (self.hi - size) & ~(ALIGN - 1)
        self.size = size
        for guard in (self.base, self.hi):
            if _libc.mprotect(guard, PAGE, _PROT_NONE) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mprotect of a guard page failed: {os.strerror(err)}")
        self.serial = next(self._serials)
        self.poison = POISON | ((self.serial * 40503) & 0xFFFF) | 1
        self._fill_padding()
        self.site = _site()
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.shape = shape

    # -- views
    def view(self, lo: int, hi: int) -> np.ndarray:
        """The bytes [lo, hi) as a uint8 array (addresses)."""
        return self.bytes[lo - self.base : hi - self.base]

    def data(self) -> np.ndarray:
        return self.view(self.ptr, self.ptr + self.size)

    def contains(self, addr: int) -> bool:
        return self.ptr <= addr < self.ptr + max(self.size, 1)

    # -- padding
    def _padding(self):
        return ((self.lo, self.ptr), (self.ptr + self.size, self.hi))

    def _fill_padding(self):
        pattern = _pattern(self.poison)
        for a, b in self._padding():
            if b > a:
                self.view(a, b)[:] = pattern[a % 4 : a % 4 + (b - a)]

    def check_padding(self) -> tuple[int, int] | None:
        """None when the padding still holds the pattern, else the first changed byte's
        address and the number of changed bytes."""
        pattern = _pattern(self.poison)
        for a, b in self._padding():
            if b <= a:
                continue
            got = self.view(a, b)
            bad = np.flatnonzero(got != pattern[a % 4 : a % 4 + (b - a)])
            if bad.size:
                return a + int(bad[0]), int(bad.size)
        return None

    def describe(self) -> str:
        what = f"{self.size:,}-byte device buffer #{self.serial}"
        if self.dtype is not None and self.shape is not None:
            what += f" ({self.dtype} array of shape {tuple(self.shape)})"
        return f"{what} allocated at {self.site}"

    def locate(self, addr: int) -> str:
        """Where ``addr`` is relative to this buffer, in words."""
        if addr < self.lo:
            return f"{self.ptr - addr} bytes before the start of {self.describe()} (guard page)"
        if addr < self.ptr:
            return f"{self.ptr - addr} bytes before the start of {self.describe()} (padding)"
        if addr < self.ptr + self.size:
            off = addr - self.ptr
            item = ""
            if self.dtype is not None and self.dtype.itemsize:
                item = f", element {off // self.dtype.itemsize}"
            return f"byte {off}{item} of {self.describe()}"
        past = addr - (self.ptr + self.size)
        where = "padding" if addr < self.hi else "guard page"
        return f"{past} bytes past the end of {self.describe()} ({where})"


class _Registry:
    """Live buffers by address, for pointer checks and fault reports."""

    def __init__(self):
        self.lock = threading.Lock()
        self.starts: list[int] = []  # mapping bases, sorted
        self.refs: dict[int, weakref.ref] = {}
        self.used = 0

    def add(self, buf: DeviceBuffer):
        with self.lock:
            bisect.insort(self.starts, buf.base)
            self.refs[buf.base] = weakref.ref(buf)
            self.used += _rounded(buf.size)
        weakref.finalize(buf, self.remove, buf.base, _rounded(buf.size))

    def remove(self, base: int, size: int):
        with self.lock:
            i = bisect.bisect_left(self.starts, base)
            if i < len(self.starts) and self.starts[i] == base:
                del self.starts[i]
            self.refs.pop(base, None)
            self.used -= size

    def find(self, addr: int) -> DeviceBuffer | None:
        """The buffer whose mapping (guard pages included) holds ``addr``."""
        with self.lock:
            i = bisect.bisect_right(self.starts, addr) - 1
            if i < 0:
                return None
            ref = self.refs.get(self.starts[i])
        buf = ref() if ref is not None else None
        if buf is not None and buf.base <= addr < buf.hi + PAGE:
            return buf
        return None

    def nearest(self, addr: int) -> DeviceBuffer | None:
        with self.lock:
            i = bisect.bisect_right(self.starts, addr) - 1
            cands = [self.starts[j] for j in (i, i + 1) if 0 <= j < len(self.starts)]
            refs = [self.refs.get(c) for c in cands]
        bufs = [b for b in (r() for r in refs if r is not None) if b is not None]
        if not bufs:
            return None
        return min(bufs, key=lambda b: min(abs(addr - b.ptr), abs(addr - (b.ptr + b.size))))


registry = _Registry()
pool_limit = 0  # cupy.get_default_memory_pool().set_limit(...); 0: none


def _rounded(size: int) -> int:
    return -(-size // 512) * 512  # CuPy's pool rounds requests to 512 bytes


def allocate(size: int, dtype=None, shape=None) -> DeviceBuffer:
    limit = min(settings.memory_bytes, pool_limit) if pool_limit else settings.memory_bytes
    if registry.used + _rounded(size) > limit:
        raise OutOfMemoryError(size, registry.used, limit)
    buf = DeviceBuffer(size, dtype, shape)
    registry.add(buf)
    return buf


def describe_address(addr: int) -> str:
    """An address in words: which buffer it falls in or near."""
    if addr == 0:
        return "the null pointer"
    if addr < PAGE:
        return f"address 0x{addr:x}, just past the null pointer (a null base plus an offset)"
    buf = registry.find(addr)
    if buf is not None:
        return f"0x{addr:x}: {buf.locate(addr)}"
    near = registry.nearest(addr)
    if near is not None and abs(addr - near.ptr) < (1 << 20):
        return f"0x{addr:x}, outside every live device buffer; nearest: {near.locate(addr)}"
    return f"0x{addr:x}, outside every live device buffer (a freed buffer or a wild pointer)"


def unwritten_mask(a: np.ndarray) -> np.ndarray | None:
    """Where a float array still holds cupy.empty's fill (None for other dtypes)."""
    bits = UNWRITTEN.get(a.dtype)
    if bits is None:
        return None
    return a.view(bits.dtype) == bits
