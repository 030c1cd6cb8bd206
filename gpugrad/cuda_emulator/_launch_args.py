"""What a launch is handed: CuPy's argument packing, and the checks against the kernel.

``pack`` turns each argument into the bytes ``cupy.RawKernel.__call__`` would pass (an array
becomes its device pointer, a NumPy scalar its C value, a Python int an int64, a float a
float64, a bool one byte, None a null pointer). ``LaunchChecks`` (a base of ``Kernel``) checks
the launch configuration against CUDA's limits and the kernel's ``__launch_bounds__``, and the
arguments against the kernel's C parameter types as the compiler saw them: count, width,
pointer versus value, an array's dtype against the pointee, an array's layout (kernels index
raw pointers densely), and that every pointer (including those inside pointer tables) is null
or inside a live buffer; ``_reachable`` lists the buffers a launch can touch.
"""

from __future__ import annotations

import numpy as np

from . import _memory
from .errors import LaunchError

# The array module's types (the CuPy stand-in registers them; this module never imports it).
_types: dict = {}


def register_array_types(ndarray, memory_pointer, driver_error) -> None:
    """Tell launches what a device array, a MemoryPointer and a driver error are."""
    _types.update(ndarray=ndarray, pointer=memory_pointer, driver_error=driver_error)


_SCALAR_DTYPES = {
    "f2": np.float16,
    "f4": np.float32,
    "f8": np.float64,
    "i1": np.int8,
    "i2": np.int16,
    "i4": np.int32,
    "i8": np.int64,
    "u1": np.uint8,
    "u2": np.uint16,
    "u4": np.uint32,
    "u8": np.uint64,
    "b1": np.bool_,
}
_PY_TYPE = {"f": "float", "i": "signed integer", "u": "unsigned integer", "b": "bool"}


class LaunchChecks:
    """The checks of one launch, before it runs; mixed into ``_runtime.Kernel`` (which has
    ``name``, ``info`` (its ``_build.KernelInfo``) and ``codes``, the parameter types)."""

    def _config(self, grid, block, shared_mem, site):
        if not isinstance(grid, tuple) or not isinstance(block, tuple):
            raise TypeError(
                f"{self.name}: grid and block must be tuples (CuPy requires them), got "
                f"{type(grid).__name__} and {type(block).__name__}"
            )
        try:
            g = tuple(max(1, int(v)) for v in (grid + (1, 1))[:3])
            b = tuple(max(1, int(v)) for v in (block + (1, 1))[:3])
        except (TypeError, ValueError) as e:
            raise TypeError(f"{self.name}: grid {grid} and block {block} must hold ints") from e
        limits = [
            (g[0] <= 2**31 - 1, f"grid.x = {g[0]} exceeds 2147483647"),
            (g[1] <= 65535, f"grid.y = {g[1]} exceeds 65535"),
            (g[2] <= 65535, f"grid.z = {g[2]} exceeds 65535"),
            (
                b[0] <= 1024 and b[1] <= 1024 and b[2] <= 64,
                f"block {b} exceeds the per-dimension limits (1024, 1024, 64)",
            ),
            (b[0] * b[1] * b[2] <= 1024, f"block {b} has more than 1024 threads"),
            (
                shared_mem <= 48 * 1024,
                f"{shared_mem} bytes of dynamic shared memory; 48 KiB without the opt-in attribute",
            ),
        ]
        for ok, why in limits:
            if not ok:
                raise _driver_error(
                    "CUDA_ERROR_INVALID_VALUE: invalid argument",
                    f"{self._head()}: {why}. {site}",
                )
        bound = self.info.launch_bound
        if bound is not None and b[0] * b[1] * b[2] > bound:
            raise _driver_error(
                "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: too many resources requested for launch",
                f"{self._head()}: block {b} has {b[0] * b[1] * b[2]} threads but the kernel is "
                f"compiled with __launch_bounds__({bound}). {site}",
            )
        return g, b

    def _head(self) -> str:
        return f"kernel {self.name} ({self.info.where})"

    def _signature(self) -> str:
        return f"{self.name}({self.info.param_text()})"

    def _arg_error(self, i, why, site):
        t, n = self.info.params[i] if i < len(self.info.params) else ("?", "?")
        return LaunchError(
            f"{self._head()}, argument {i} ({t} {n}): {why}\n  the kernel: {self._signature()}"
            f"\n  {site}"
        )

    def _check(self, args, packed, site):
        if len(args) != len(self.codes):
            raise LaunchError(
                f"{self._head()} takes {len(self.codes)} arguments, got {len(args)}\n"
                f"  the kernel: {self._signature()}\n  {site}"
            )
        for i, (code, arg, (value, kind, dtype)) in enumerate(
            zip(self.codes, args, packed, strict=True)
        ):
            if code.startswith("*"):
                self._check_pointer(i, code[1:], arg, value, kind, dtype, site)
            elif kind == "array":
                raise self._arg_error(
                    i,
                    "got a device array where the kernel takes a value; pass a NumPy scalar "
                    "of the parameter's type",
                    site,
                )
            elif code.startswith("s"):
                size = int(code[1:].split("a")[0])
                if len(value) != size:
                    raise self._arg_error(
                        i, f"got {len(value)} bytes for a {size}-byte struct", site
                    )
            else:
                want = np.dtype(_SCALAR_DTYPES[code])
                if kind in ("null", "pointer"):
                    raise self._arg_error(
                        i, f"got {_describe(arg)} where the kernel takes a {want} value", site
                    )
                if dtype.itemsize != want.itemsize or _family(dtype) != _family(want):
                    raise self._arg_error(
                        i,
                        f"got {_describe(arg)} ({dtype}, {dtype.itemsize} bytes as CuPy packs it);"
                        f" the kernel reads a {want.itemsize}-byte {_PY_TYPE[want.kind]}. Pass "
                        f"numpy.{want.type.__name__}(...)",
                        site,
                    )

    def _check_pointer(self, i, pointee, arg, value, kind, dtype, site):
        if kind == "null" or kind == "pointer":
            return
        if kind == "array":
            a = arg
            if pointee.startswith("*"):
                if a.dtype.kind not in "iu" or a.dtype.itemsize != 8:
                    raise self._arg_error(
                        i,
                        f"a pointer table must be a uint64 (or int64) array of device "
                        f"addresses, got {a.dtype}",
                        site,
                    )
            elif pointee in _SCALAR_DTYPES:
                want = np.dtype(_SCALAR_DTYPES[pointee])
                if a.dtype != want:
                    raise self._arg_error(
                        i,
                        f"got a {a.dtype} array {a.shape}; the kernel reads {want} elements. "
                        f"Convert it with .astype(numpy.{want.type.__name__})",
                        site,
                    )
            if a.size and not a.flags.c_contiguous:
                raise self._arg_error(
                    i,
                    f"got a non-contiguous {a.dtype} view {a.shape} with strides {a.strides}; "
                    "the kernel indexes its pointer as a dense row-major array. Pass "
                    "cupy.ascontiguousarray(x)",
                    site,
                )
            return
        if kind == "scalar" and dtype.kind in "iu" and dtype.itemsize == 8:
            addr = int(np.frombuffer(value, np.uint64)[0])
            if addr == 0 or _live(addr):
                return
            raise self._arg_error(
                i,
                f"got the integer 0x{addr:x}, which is not a device address: "
                f"{_memory.describe_address(addr)}",
                site,
            )
        raise self._arg_error(
            i,
            f"got {_describe(arg)} where the kernel takes a pointer; pass a device array "
            "(or None for a null pointer)",
            site,
        )

    def _reachable(self, args, packed, site) -> list[tuple[_memory.DeviceBuffer, str]]:
        """The buffers the kernel can reach: pointer arguments and the entries of pointer
        tables, each with a label for messages."""
        ndarray = _types["ndarray"]
        found: dict[int, tuple[_memory.DeviceBuffer, str]] = {}

        def add(buf, label):
            if buf is not None and buf.serial not in found:
                found[buf.serial] = (buf, label)

        for i, (code, arg, (value, kind, _)) in enumerate(
            zip(self.codes, args, packed, strict=True)
        ):
            if not code.startswith("*"):
                continue
            label = f"argument {i} ({self.info.params[i][1] or code})"
            if isinstance(arg, ndarray):
                add(arg._buf, label)
                if code.startswith("**") and arg._buf is not None:
                    table = arg._a.reshape(-1).view(np.uint64)
                    for j, p in enumerate(table.tolist()):
                        if p == 0:
                            continue
                        buf = _memory.registry.find(p)
                        if buf is None or not buf.contains(p):
                            raise self._arg_error(
                                i,
                                f"pointer table entry {j} is 0x{p:x}, not a live device "
                                f"address: {_memory.describe_address(p)}",
                                site,
                            )
                        add(buf, f"{label}[{j}]")
            elif kind == "scalar" or kind == "pointer":
                addr = int(np.frombuffer(value[:8], np.uint64)[0]) if len(value) >= 8 else 0
                if addr:
                    add(_memory.registry.find(addr), label)
        return sorted(found.values(), key=lambda b: b[0].ptr)


# ----------------------------------------------------------------------------- helpers


def _family(dt: np.dtype) -> str:
    return {"i": "int", "u": "int", "f": "float", "b": "bool"}.get(dt.kind, dt.kind)


def _live(addr: int) -> bool:
    buf = _memory.registry.find(addr)
    return buf is not None and buf.contains(addr)


def _describe(arg) -> str:
    if arg is None:
        return "None"
    if isinstance(arg, np.generic):
        return f"numpy.{type(arg).__name__}({arg})"
    if isinstance(arg, bool | int | float | complex):
        return f"the Python {type(arg).__name__} {arg!r}"
    return type(arg).__name__


def pack(x) -> tuple[bytes, str, np.dtype | None]:
    """(bytes, kind, dtype) of one argument, as CuPy's launcher packs it."""
    ndarray, MemoryPointer = _types["ndarray"], _types["pointer"]
    if x is None:
        return bytes(8), "null", None
    if isinstance(x, ndarray):
        return int(x.data.ptr).to_bytes(8, "little"), "array", x.dtype
    if isinstance(x, MemoryPointer):
        return int(x.ptr).to_bytes(8, "little"), "pointer", None
    if isinstance(x, np.ndarray):
        if x.size != 1:
            raise TypeError(
                f"You are trying to pass a numpy.ndarray of shape {x.shape} as a kernel "
                "parameter. Only numpy.ndarrays of size one can be passed by value. If you meant "
                "to pass a pointer to __global__ memory, you need to pass a cupy.ndarray instead."
            )
        return x.tobytes(), "scalar", x.dtype
    if isinstance(x, np.generic):
        return x.tobytes(), "scalar", x.dtype
    if type(x) is bool:
        v = np.bool_(x)
    elif type(x) is int:
        v = np.uint64(x) if x >= 1 << 63 else np.int64(x)
    elif type(x) is float:
        v = np.float64(x)
    elif type(x) is complex:
        v = np.complex128(x)
    else:
        raise TypeError(f"Unsupported type {type(x)}")
    return v.tobytes(), "scalar", v.dtype


def _driver_error(code: str, detail: str):
    return _types["driver_error"](f"{code} (emulated device: {detail})")
