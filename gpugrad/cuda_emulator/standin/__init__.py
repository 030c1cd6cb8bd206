"""A CuPy stand-in for the emulated device: modules named ``cupy``, ``cupy.cuda``, ...,
``cupyx`` that answer exactly the names real CuPy exports (``cupy_names.json``).

A name CuPy has and the stand-in implements works; a name CuPy has and the stand-in lacks
raises ``NotEmulatedError`` naming it; any other name raises AttributeError exactly as it would
on a GPU machine (``cupy.errstate`` does not exist in CuPy). The modules are built at import but
only become ``import cupy`` inside ``gpugrad.cuda_emulator.installed()``.
"""

from __future__ import annotations

import json
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .. import _memory, _runtime
from ..errors import NotEmulatedError
from . import _device, _dlpack, _functions, _methods, _ndarray, _raw

_DATA = json.loads((Path(__file__).resolve().parents[1] / "cupy_names.json").read_text())
CUPY_VERSION = _DATA["cupy_version"]


class StandInModule(types.ModuleType):
    """A module that knows which names real CuPy has."""

    def __init__(self, name: str, doc: str = ""):
        super().__init__(name, doc or f"gpugrad's emulated {name} (CuPy {CUPY_VERSION} names)")
        self.__dict__["_gg_names"] = frozenset(_DATA["modules"].get(name, ()))

    def __getattr__(self, attr):
        if attr in self.__dict__["_gg_names"]:
            raise NotEmulatedError(
                f"{self.__name__}.{attr} exists in CuPy {CUPY_VERSION} but gpugrad's CUDA "
                "emulator does not implement it; run this on a GPU, or add it to "
                "gpugrad/cuda_emulator/standin"
            )
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")

    def __dir__(self):
        return sorted(self.__dict__["_gg_names"])

    def _fill(self, mapping: dict):
        """Set the implemented names; a name CuPy lacks is a bug in the stand-in."""
        names = self.__dict__["_gg_names"]
        extra = sorted(k for k in mapping if k not in names and not k.startswith("__"))
        if extra:
            raise AssertionError(f"{self.__name__}: names real CuPy lacks: {extra}")
        for k, v in mapping.items():
            setattr(self, k, v)


def _runtime_module() -> StandInModule:
    m = StandInModule("cupy.cuda.runtime")

    def get_device_count():
        return 1

    def get_device():
        return _device._current_device

    def set_device(device):
        _device.Device(device).use()

    def device_properties(device):
        _device.Device(device).attributes  # noqa: B018 - raises for a device that does not exist
        from .._config import settings

        return {
            "name": b"gpugrad CUDA emulator (host CPU)",
            "totalGlobalMem": settings.memory_bytes,
            "sharedMemPerBlock": 48 * 1024,
            "regsPerBlock": 65536,
            "warpSize": 32,
            "maxThreadsPerBlock": 1024,
            "maxThreadsDim": (1024, 1024, 64),
            "maxGridSize": (2**31 - 1, 65535, 65535),
            "clockRate": 1_000_000,
            "multiProcessorCount": settings.sm_count,
            "major": 9,
            "minor": 0,
            "integrated": 0,
            "pciBusID": 0,
            "pciDeviceID": 0,
            "pciDomainID": 0,
        }

    def mem_get_info():
        return _device.Device(_device._current_device).mem_info

    def noop(*args, **kwargs):
        return None

    consts = _DATA["int_constants"].get("cupy.cuda.runtime", {})
    m._fill(
        {
            **consts,
            "CUDARuntimeError": _device.CUDARuntimeError,
            "getDeviceCount": get_device_count,
            "getDevice": get_device,
            "setDevice": set_device,
            "getDeviceProperties": device_properties,
            "deviceSynchronize": noop,
            "streamSynchronize": noop,
            "runtimeGetVersion": lambda: 13000,
            "driverGetVersion": lambda: 13000,
            "memGetInfo": mem_get_info,
            "is_hip": False,
        }
    )
    return m


def _build_modules() -> dict[str, types.ModuleType]:
    _methods.install_methods(_DATA["classes"]["cupy.ndarray"])
    mods: dict[str, StandInModule] = {name: StandInModule(name) for name in _DATA["modules"]}
    cupy, cuda = mods["cupy"], mods["cupy.cuda"]
    runtime = _runtime_module()
    mods["cupy.cuda.runtime"] = runtime

    ns = _functions.build_namespace(_DATA["modules"]["cupy"])
    _ndarray.NAMESPACE.update(ns)
    cupy._fill(ns)
    cupy.__version__ = CUPY_VERSION
    cupy.__path__ = []  # a package, so `import cupy.cuda` resolves through sys.modules
    cupy.__file__ = __file__

    driver = mods["cupy.cuda.driver"]
    driver._fill(
        {
            **_DATA["int_constants"].get("cupy.cuda.driver", {}),
            "CUDADriverError": _device.CUDADriverError,
            "get_build_version": lambda: 13000,
        }
    )
    memory = mods["cupy.cuda.memory"]
    mem_names = {
        "OutOfMemoryError": _memory.OutOfMemoryError,
        "MemoryPool": _device.MemoryPool,
        "Memory": _device.Memory,
        "MemoryPointer": _device.MemoryPointer,
        "alloc": lambda size: _device.get_default_memory_pool().malloc(size),
        "set_allocator": lambda allocator=None: None,
        "get_allocator": lambda: _device.get_default_memory_pool().malloc,
        "CUDARuntimeError": _device.CUDARuntimeError,
    }
    memory._fill(mem_names)
    compiler = mods["cupy.cuda.compiler"]
    compiler._fill({"CompileException": _device.CompileException})

    @contextmanager
    def profile():
        yield

    cuda._fill(
        {
            "Device": _device.Device,
            "Stream": _device.Stream,
            "Event": _device.Event,
            "Memory": _device.Memory,
            "MemoryPointer": _device.MemoryPointer,
            "MemoryPool": _device.MemoryPool,
            "PinnedMemoryPool": _device.PinnedMemoryPool,
            "alloc": mem_names["alloc"],
            "get_allocator": mem_names["get_allocator"],
            "set_allocator": mem_names["set_allocator"],
            "set_pinned_memory_allocator": lambda allocator=None: None,
            "using_allocator": _device.using_allocator,
            "get_current_stream": _device.get_current_stream,
            "get_device_id": lambda: _device._current_device,
            "get_elapsed_time": _device.get_elapsed_time,
            "is_available": lambda: True,
            "profile": profile,
            "runtime": runtime,
            "driver": driver,
            "memory": memory,
            "compiler": compiler,
        }
    )
    cuda.__path__ = []

    mods["cupy.linalg"]._fill(_functions.namespace_from(np.linalg, _DATA["modules"]["cupy.linalg"]))
    mods["cupy.fft"]._fill(_functions.namespace_from(np.fft, _DATA["modules"]["cupy.fft"]))
    mods["cupy.random"]._fill(_functions.random_namespace(_DATA["modules"]["cupy.random"]))
    cupy._fill(
        {
            "cuda": cuda,
            "linalg": mods["cupy.linalg"],
            "fft": mods["cupy.fft"],
            "random": mods["cupy.random"],
            "testing": mods["cupy.testing"],
        }
    )

    cupyx = mods["cupyx"]
    cupyx.__path__ = []
    cupyx._fill({**_functions.CUPYX, "scipy": mods["cupyx.scipy"]})
    mods["cupyx.scipy"].__path__ = []
    # Submodules CuPy imports lazily (absent from dir() until imported) are attributes too.
    mods["cupyx.scipy"].special = mods["cupyx.scipy.special"]
    mods["cupyx.scipy.special"]._fill({"erf": _functions.special_erf})
    cupyx.distributed = mods["cupyx.distributed"]
    return mods


MODULES = _build_modules()
cupy = MODULES["cupy"]
cupyx = MODULES["cupyx"]
_ndarray.HOOKS.update(cupy=cupy, dlpack_export=_dlpack.export)
_runtime.register_array_types(_ndarray.ndarray, _device.MemoryPointer, _device.CUDADriverError)

__all__ = ["MODULES", "NotEmulatedError", "cupy", "cupyx", "_raw"]
