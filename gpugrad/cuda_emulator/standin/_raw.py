"""cupy.RawModule and cupy.RawKernel backed by host-compiled kernels."""

from __future__ import annotations

import threading

from .. import _build, _runtime
from ..errors import CompileError, NotEmulatedError
from ._device import CompileException, CUDADriverError

_modules: dict[str, _runtime.Module] = {}
_lock = threading.Lock()


def load(code: str, options=()) -> _runtime.Module:
    """Build (or fetch) the host module of a kernel source; CompileException on g++ errors."""
    try:
        built = _build.build(code, options)
    except CompileError as e:
        raise CompileException(str(e), source=code, options=tuple(options)) from e
    with _lock:
        mod = _modules.get(built.key)
        if mod is None:
            mod = _modules[built.key] = _runtime.Module(built)
    return mod


class RawModule:
    """cupy.RawModule: ``code`` compiled by g++ after the emulator's CUDA header."""

    def __init__(
        self,
        code=None,
        *,
        path=None,
        options=(),
        backend="nvrtc",
        translate_cucomplex=False,
        enable_cooperative_groups=False,
        name_expressions=None,
        log_stream=None,
        jitify=False,
    ):
        if path is not None:
            raise NotEmulatedError(
                "cupy.RawModule(path=...) loads a cubin or PTX file, which the CUDA emulator "
                "cannot run; pass the CUDA C++ source as code="
            )
        if code is None:
            raise TypeError("RawModule: one of code or path is required")
        if name_expressions:
            raise NotEmulatedError(
                "cupy.RawModule(name_expressions=...): C++ template kernels are not emulated; "
                'declare the kernels extern "C"'
            )
        self.code = code
        self.options = tuple(options)
        self.backend = backend
        self.enable_cooperative_groups = enable_cooperative_groups
        self._module = None

    def compile(self, log_stream=None):
        if self._module is None:
            self._module = load(self.code, self.options)
        return self

    @property
    def module(self):
        return self.compile()._module

    def get_function(self, name):
        mod = self.module
        kernel = mod.kernel(name)
        if kernel is None:
            raise CUDADriverError(
                500,
                f'CUDA_ERROR_NOT_FOUND: named symbol not found (emulated device: no extern "C" '
                f"__global__ kernel {name!r} in {mod.built.display}; it defines "
                f"{', '.join(mod.names) or 'none'})",
            )
        return kernel

    def get_global_var(self, name):
        raise NotEmulatedError("cupy.RawModule.get_global_var: __device__ globals are not emulated")

    def get_texref(self, name):
        raise NotEmulatedError("cupy.RawModule.get_texref: textures are not emulated")


class RawKernel:
    """cupy.RawKernel: one kernel of ``code``, compiled on first use."""

    def __init__(
        self,
        code,
        name,
        options=(),
        backend="nvrtc",
        translate_cucomplex=False,
        enable_cooperative_groups=False,
        jitify=False,
    ):
        self.code, self.name, self.options = code, name, tuple(options)
        self.backend = backend
        self.enable_cooperative_groups = enable_cooperative_groups
        self._kernel = None

    @property
    def kernel(self):
        if self._kernel is None:
            self._kernel = RawModule(code=self.code, options=self.options).get_function(self.name)
        return self._kernel

    def compile(self, log_stream=None):
        self.kernel  # noqa: B018 - builds and loads

    def __call__(self, grid, block, args, **kwargs):
        return self.kernel(grid, block, args, **kwargs)

    @property
    def attributes(self):
        bound = self.kernel.info.launch_bound or 1024
        zero = ("shared_size_bytes", "const_size_bytes", "local_size_bytes", "num_regs")
        return {"max_threads_per_block": bound, **dict.fromkeys(zero, 0)}

    @property
    def max_threads_per_block(self):
        return self.attributes["max_threads_per_block"]


RawModule.__module__ = RawKernel.__module__ = "cupy"
