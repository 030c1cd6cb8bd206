"""Launching host-compiled kernels: thread/block orders, guards, comparisons, faults.

``Kernel.__call__`` takes what ``cupy.RawKernel.__call__`` takes, packs the arguments the way
CuPy does and checks the configuration and the arguments against the kernel
(``_launch_args.py``). Then the launch runs once per order in ``settings.order_list()`` from
the same inputs (the buffers it can reach are saved first and restored between runs); every run
must leave the same bytes, except buffers that received float atomics, whose summation order
legitimately varies and which are compared with a tolerance. After each run the padding around
every reachable buffer must still hold its pattern. A fault, a misused barrier or a trap in the
kernel comes back as an exception naming the kernel, its source line, the thread and block.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
import time

import numpy as np

from . import _build, _memory
from ._config import settings
from ._launch_args import LaunchChecks, pack, register_array_types
from .errors import (
    DeviceTrap,
    KernelFault,
    LaunchError,
    OrderDependentResult,
    SyncError,
)

__all__ = ["Kernel", "Module", "call_site", "register_array_types", "stats"]


class _Launch(ctypes.Structure):
    # Mirrors gg_emu::Launch in cuda_emu.h.
    _fields_ = [
        ("grid", ctypes.c_uint32 * 3),
        ("block", ctypes.c_uint32 * 3),
        ("shared_mem", ctypes.c_uint64),
        ("args", ctypes.POINTER(ctypes.c_void_p)),
        ("order", ctypes.c_int32),
        ("reserved", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("n_buffers", ctypes.c_int64),
        ("buf_lo", ctypes.POINTER(ctypes.c_uint64)),
        ("buf_hi", ctypes.POINTER(ctypes.c_uint64)),
        ("buf_float_atomic", ctypes.POINTER(ctypes.c_int32)),
        ("n_shared", ctypes.c_int64),
        ("shared_lo", ctypes.POINTER(ctypes.c_uint64)),
        ("shared_hi", ctypes.POINTER(ctypes.c_uint64)),
        ("status", ctypes.c_int32),
        ("signal", ctypes.c_int32),
        ("fault_addr", ctypes.c_uint64),
        ("fault_pc", ctypes.c_uint64),
        ("fault_write", ctypes.c_int32),
        ("thread", ctypes.c_int32 * 3),
        ("block_idx", ctypes.c_int32 * 3),
        ("message", ctypes.c_char * 4096),
    ]


_FAULT, _SYNC, _MISALIGNED, _TRAP, _BAD_LAUNCH = 1, 2, 3, 4, 5
_launch_lock = threading.RLock()  # one launch at a time: signal handlers are process-wide
stats = {"launches": 0, "runs": 0, "seconds": 0.0}


class Module:
    """A loaded kernel source (what ``cupy.RawModule`` compiles to)."""

    def __init__(self, built: _build.Built):
        self.built = built
        self.lib = _build.load_library(built)
        anchor = ctypes.cast(self.lib.gg_emu_dyn_shared, ctypes.c_void_p).value
        self.load_base = anchor - built.anchor
        shared = [
            (self.load_base + off, self.load_base + off + size)
            for off, size, _ in built.shared_vars
        ]
        self._shared_lo = (ctypes.c_uint64 * max(1, len(shared)))(*(a for a, _ in shared))
        self._shared_hi = (ctypes.c_uint64 * max(1, len(shared)))(*(b for _, b in shared))
        self._n_shared = len(shared)
        self._kernels: dict[str, Kernel] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self.built.kernels)

    def kernel(self, name: str) -> Kernel | None:
        k = self._kernels.get(name)
        if k is None and name in self.built.kernels:
            k = self._kernels[name] = Kernel(self, self.built.kernels[name])
        return k


class Kernel(LaunchChecks):
    """One ``extern "C" __global__`` function, callable like ``cupy.RawKernel``."""

    def __init__(self, module: Module, info: _build.KernelInfo):
        self.module = module
        self.info = info
        self.name = info.name
        self._entry = getattr(module.lib, f"gg_emu_launch_{info.name}")
        self._entry.argtypes = (ctypes.POINTER(_Launch),)
        self._entry.restype = ctypes.c_int
        sig = getattr(module.lib, f"gg_emu_signature_{info.name}")
        sig.restype = ctypes.c_char_p
        text = sig().decode().rstrip(";")
        self.codes = text.split(",") if text else []
        if len(self.codes) != len(info.params):  # the scan and the compiler disagree: trust g++
            info.params = [(c, f"arg{i}") for i, c in enumerate(self.codes)]

    def __repr__(self):
        return f"<emulated kernel {self.name} ({self.info.where})>"

    # ------------------------------------------------------------------ launching
    def __call__(
        self, grid, block, args, shared_mem=0, stream=None, enable_cooperative_groups=False
    ):
        site = call_site()
        grid, block = self._config(grid, block, shared_mem, site)
        args = tuple(args)
        packed = [pack(a) for a in args]
        self._check(args, packed, site)
        buffers = self._reachable(args, packed, site)
        values = [p[0] for p in packed]
        holders = [ctypes.create_string_buffer(v, max(len(v), 1)) for v in values]
        argv = (ctypes.c_void_p * max(1, len(holders)))(*(ctypes.addressof(h) for h in holders))
        with _launch_lock:
            t0 = time.perf_counter()
            try:
                self._run_orders(grid, block, shared_mem, argv, buffers, site)
            finally:
                stats["launches"] += 1
                stats["seconds"] += time.perf_counter() - t0

    def _run_orders(self, grid, block, shared_mem, argv, buffers, site):
        bufs = [b for b, _ in buffers if b.size]
        saved = [b.data().copy() for b in bufs]
        n = max(1, len(bufs))
        lo = (ctypes.c_uint64 * n)(*(b.ptr for b in bufs))
        hi = (ctypes.c_uint64 * n)(*(b.ptr + b.size for b in bufs))
        atomic = (ctypes.c_int32 * n)()
        first = None
        for run, (order_name, order, seed) in enumerate(settings.order_list()):
            if run:
                for b, s in zip(bufs, saved, strict=True):
                    b.data()[:] = s
            L = _Launch()
            L.grid[:] = grid
            L.block[:] = block
            L.shared_mem = shared_mem
            L.args = argv
            L.order, L.seed = order, seed
            L.n_buffers, L.buf_lo, L.buf_hi, L.buf_float_atomic = len(bufs), lo, hi, atomic
            L.n_shared = self.module._n_shared
            L.shared_lo, L.shared_hi = self.module._shared_lo, self.module._shared_hi
            self._entry(ctypes.byref(L))
            stats["runs"] += 1
            if L.status:
                raise self._failure(L, order_name, grid, block, site)
            for b, label in buffers:
                bad = b.check_padding() if b.size else None
                if bad is not None:
                    raise KernelFault(
                        f"{self._head()} wrote outside {label}: {bad[1]} byte(s) of padding "
                        f"changed, the first at {_memory.describe_address(bad[0])} (run "
                        f"'{order_name}', grid {grid}, block {block})\n  {site}"
                    )
            result = [b.data().copy() for b in bufs]
            if first is None:
                first = (order_name, result)
                continue
            for k, (b, label) in enumerate((b, lbl) for b, lbl in buffers if b.size):
                self._compare(
                    b, label, first, (order_name, result[k]), k, bool(atomic[k]), grid, block, site
                )

    def _compare(self, buf, label, first, other, k, atomic, grid, block, site):
        name0, res0 = first
        name1, got = other
        ref = res0[k]
        if np.array_equal(ref, got):
            return
        dtype = buf.dtype if buf.dtype is not None and buf.size % buf.dtype.itemsize == 0 else None
        if dtype is None or dtype.kind not in "fiub":
            dtype = np.dtype(np.uint8)
        a, b = ref.view(dtype), got.view(dtype)
        if atomic and dtype.kind == "f":
            # Float atomics: the summation order may differ; compare within rounding of the
            # largest value (sums that cancel have small values but the terms' rounding).
            rtol = 1e-5 if dtype.itemsize <= 4 else 1e-12
            finite = np.abs(a[np.isfinite(a)])
            scale = float(finite.max()) if finite.size else 0.0
            if np.allclose(a, b, rtol=rtol, atol=rtol * scale, equal_nan=True):
                return
        diff = np.flatnonzero(
            ~((a == b) | (np.isnan(a) & np.isnan(b)) if dtype.kind == "f" else a == b)
        )
        j = int(diff[0]) if diff.size else 0
        raise OrderDependentResult(
            f"{self._head()}: the result depends on the order threads and blocks run in, which "
            f"CUDA does not fix. {label} ({buf.describe()}) differs between the '{name0}' and "
            f"'{name1}' runs in {diff.size} element(s); first at element {j}: {a[j]!r} vs "
            f"{b[j]!r}. Look for a missing __syncthreads() or __syncwarp(), threads writing the "
            f"same location, or a read of memory another thread writes (grid {grid}, block "
            f"{block}).\n  {site}"
        )

    def _failure(self, L, order_name, grid, block, site):
        msg = L.message.decode(errors="replace")
        thread = tuple(L.thread)
        where = (
            f"thread {thread} of block {tuple(L.block_idx)}"
            if thread[0] >= 0
            else f"block {tuple(L.block_idx)}"
        )
        ctx = f"(run '{order_name}', grid {grid}, block {block}, {where})"
        code = _source_line(self.module.built, L.fault_pc, L.status == _FAULT)
        at = f" at {code}" if code else ""
        if L.status == _FAULT:
            access = {1: "write to", 0: "read of"}.get(L.fault_write, "access to")
            return KernelFault(
                f"{self._head()}: invalid {access} {_memory.describe_address(L.fault_addr)}{at} "
                f"{ctx}: {msg}\n  {site}"
            )
        if L.status == _MISALIGNED:
            return KernelFault(
                f"{self._head()}: {msg}{at}; the address is "
                f"{_memory.describe_address(L.fault_addr)} {ctx}\n  {site}"
            )
        if L.status == _TRAP:
            return DeviceTrap(f"{self._head()}: {msg} {ctx}\n  {site}")
        if L.status == _BAD_LAUNCH:
            return LaunchError(f"{self._head()}: {msg}\n  {site}")
        return SyncError(f"{self._head()}: {msg} {ctx}\n  {site}")


# ----------------------------------------------------------------------------- diagnostics


def call_site(depth: int = 4) -> str:
    """'launched from a:1 (f) <- b:2 (g)': the first frames outside the emulator."""
    here = os.path.dirname(__file__)
    f = sys._getframe(1)
    frames = []
    while f is not None and len(frames) < depth:
        name = f.f_code.co_filename
        if not name.startswith(here):
            frames.append(f"{_memory._short(name)}:{f.f_lineno} ({f.f_code.co_name})")
        f = f.f_back
    return "launched from " + " <- ".join(frames) if frames else "launched from ?"


_addr2line_cache: dict[tuple[str, int], str] = {}


def _source_line(built: _build.Built, pc: int, exact: bool) -> str:
    """file:line (and the function) of an instruction in the built object, via addr2line."""
    if not pc:
        return ""
    pc = pc if exact else pc - 1  # a return address points after the call
    key = (str(built.so_path), pc)
    if key in _addr2line_cache:
        return _addr2line_cache[key]
    try:
        proc = subprocess.run(
            ["addr2line", "-f", "-i", "-C", "-e", str(built.so_path), hex(pc)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return ""
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    pairs = list(zip(lines[0::2], lines[1::2], strict=False))
    parts = []
    for func, loc in pairs:
        if loc.startswith("??") or "cuda_emu.h" in loc:
            continue
        loc = loc.split(" (discriminator")[0]
        short = func.split("(")[0]
        parts.append(f"{os.path.basename(loc)} in {short}")
    text = " <- inlined into ".join(parts[:3])
    _addr2line_cache[key] = text
    return text
