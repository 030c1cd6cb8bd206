"""The CUDA runtime of gpugrad's kernels: finding, compiling, loading and launching them.

Kernel files are compiled lazily by NVRTC through ``cupy.RawModule``, once per (file, device),
and cached for the process (CuPy also keeps the binaries in its on-disk cache). ``source()``
pastes ``common.cuh`` into the file and prepends the activation codes, so CuPy's cache key
covers both. Compile and launch failures raise ``KernelError`` naming the kernel and its file.

Nothing here imports CuPy at module import: ``KERNELS`` (the table of kernels each file must
define, checked by ``tools/compile_kernels.py``) is readable on a machine without a GPU.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np

from ... import activations, optim_rules


def _kernel_dir() -> Path:
    """GPUGRAD_KERNEL_DIR, else the source tree's kernels/, else the installed gpugrad/kernels."""
    if "GPUGRAD_KERNEL_DIR" in os.environ:
        return Path(os.environ["GPUGRAD_KERNEL_DIR"])
    here = Path(__file__).resolve().parents[2]  # the gpugrad package
    source = here.parent / "kernels"
    return source if (source / "common.cuh").exists() else here / "kernels"


KERNEL_DIR = _kernel_dir()
OPTIONS = ("-std=c++17",)
BLOCK = 256  # threads per 1-D block; GG_BLOCK in kernels/common.cuh
WARP_ROW_MAX = 1024  # rows up to this many columns get a warp each, wider ones a block
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

# Base names of the kernels each file defines (each as _f32 and _f64) and this module launches.
KERNELS: dict[str, tuple[str, ...]] = {
    "activations.cu": (
        "relu_fwd",
        "relu_bwd",
        "leaky_relu_fwd",
        "leaky_relu_bwd",
        "sigmoid_fwd",
        "sigmoid_bwd",
        "tanh_fwd",
        "tanh_bwd",
        "gelu_fwd",
        "gelu_bwd",
        "gelu_tanh_fwd",
        "gelu_tanh_bwd",
        "silu_fwd",
        "silu_bwd",
        "erf_fwd",
    ),
    "bias_act.cu": ("bias_act_fwd", "bias_act_bwd"),
    "softmax_xent.cu": tuple(
        f"{base}_{kind}"
        for base in ("xent_fwd", "softmax_fwd", "log_softmax_fwd", "softmax_bwd", "log_softmax_bwd")
        for kind in ("warp", "block")
    ),
    "layernorm.cu": (
        "layernorm_fwd_warp",
        "layernorm_fwd_block",
        "layernorm_bwd_warp",
        "layernorm_bwd_block",
        "layernorm_param_bwd",
    ),
    "losses.cu": ("bce_logits_fwd", "mse_fwd"),
    "matmul.cu": ("matmul_tiled_vec", "matmul_tiled_scalar"),
    "optim.cu": (
        "sgd_step",
        "adam_step",
        "rmsprop_step",
        "adagrad_step",
        "grad_norm_partials",
        "grad_scale",
        "grad_clamp",
    ),
}


class KernelError(RuntimeError):
    """A kernel failed to compile, load or launch; the message names the kernel and its file."""


# ----------------------------------------------------------------------------- loading

_lock = threading.Lock()
_modules: dict[tuple[str, int], object] = {}  # (file, device id) -> cupy.RawModule
_functions: dict[tuple[str, int, str], object] = {}  # (file, device id, name) -> RawKernel
_sm_count: dict[int, int] = {}


def _cp():
    import cupy

    return cupy


def source(file: str, kernel_dir: Path | None = None) -> str:
    """The text NVRTC compiles for ``file``: the activation codes and optimizer columns as
    ``#define`` lines (one table for Python and CUDA), then the file with ``common.cuh`` pasted
    in. ``kernel_dir`` (default ``KERNEL_DIR``) is where both are read from."""
    kernel_dir = KERNEL_DIR if kernel_dir is None else Path(kernel_dir)
    path = kernel_dir / file
    include = '#include "common.cuh"'
    try:
        code = path.read_text()
        if include in code:
            common = (kernel_dir / "common.cuh").read_text()
            # After the pasted header, lines continue from the one after the #include, so
            # compiler messages point at the file's own line numbers.
            after = code[: code.index(include)].count("\n") + 2
            code = code.replace(
                include, f'#line 1 "common.cuh"\n{common}\n#line {after} "{file}"', 1
            )
    except OSError as e:
        raise KernelError(f"cannot read kernel source {path}: {e}") from e
    defines = activations.cuda_defines() + optim_rules.cuda_defines()
    return f'{defines}#line 1 "{file}"\n{code}'


def module(file: str):
    """The compiled ``cupy.RawModule`` of a kernel file on the current device (cached)."""
    cp = _cp()
    key = (file, cp.cuda.Device().id)
    mod = _modules.get(key)
    if mod is None:
        with _lock:
            mod = _modules.get(key)
            if mod is None:
                mod = cp.RawModule(code=source(file), options=OPTIONS)
                try:
                    mod.compile()
                except Exception as e:
                    raise KernelError(
                        f"kernels/{file}: NVRTC compilation failed on cuda:{key[1]} with "
                        f"options {OPTIONS}: {e}"
                    ) from e
                _modules[key] = mod
    return mod


def kernel_name(base: str, dtype) -> str:
    sfx = _SUFFIX.get(np.dtype(dtype))
    if sfx is None:
        raise TypeError(f"kernel {base}: no version for dtype {dtype}; float32 and float64 only")
    return f"{base}_{sfx}"


def function(file: str, base: str, dtype):
    """The ``cupy.RawKernel`` for ``<base>_<f32|f64>`` in ``kernels/<file>`` (cached)."""
    if base not in KERNELS.get(file, ()):
        raise KernelError(f"kernel {base} is not listed for kernels/{file} in KERNELS")
    name = kernel_name(base, dtype)
    cp = _cp()
    key = (file, cp.cuda.Device().id, name)
    fn = _functions.get(key)
    if fn is None:
        try:
            fn = module(file).get_function(name)
        except KernelError:
            raise
        except Exception as e:
            raise KernelError(f"kernel {name} could not be loaded from kernels/{file}: {e}") from e
        _functions[key] = fn
    return fn


def launch(file: str, base: str, dtype, grid, block, args, shared_mem: int = 0) -> None:
    """Launch ``<base>_<dtype>`` from ``kernels/<file>`` on the current stream."""
    fn = function(file, base, dtype)
    try:
        fn(tuple(grid), tuple(block), tuple(args), shared_mem=shared_mem)
    except Exception as e:
        raise KernelError(
            f"launching kernel {kernel_name(base, dtype)} from kernels/{file} failed "
            f"(grid {tuple(grid)}, block {tuple(block)}): {type(e).__name__}: {e}"
        ) from e


def sm_count() -> int:
    cp = _cp()
    dev = cp.cuda.Device()
    if dev.id not in _sm_count:
        _sm_count[dev.id] = int(dev.attributes["MultiProcessorCount"])
    return _sm_count[dev.id]


def grid_1d(n: int, per_thread: int = 1, waves: int = 32) -> int:
    """Blocks for a grid-stride loop over n items: enough to cover them, capped at a few waves."""
    need = math.ceil(n / (BLOCK * per_thread))
    return max(1, min(need, sm_count() * waves))


def kernel_takes(*arrays) -> bool:
    """True when every array is float32 or float64, all of one dtype: a kernel exists."""
    dt = arrays[0].dtype
    return dt in _SUFFIX and all(a.dtype == dt for a in arrays)


def contiguous(a):
    return a if a.flags.c_contiguous else _cp().ascontiguousarray(a)


def scalar(dtype, value):
    """A kernel's T-typed scalar argument: CuPy packs a NumPy scalar as its own C type."""
    return np.dtype(dtype).type(value)
