"""CUDA fast paths: the kernel runtime, the op launchers (registered on the op table when this
package is imported) and the multi-tensor optimizer steps and gradient clipping."""

from . import (
    launchers,
    layernorm,  # noqa: F401  (registers its launchers on layer_norm)
    optim,
    runtime,
)
from .launchers import matmul_tiled
from .optim import (
    CHUNK,
    adagrad_step,
    adam_step,
    grad_clamp,
    grad_norm_partial,
    grad_scale,
    rmsprop_step,
    sgd_step,
)
from .runtime import (
    BLOCK,
    KERNEL_DIR,
    KERNELS,
    OPTIONS,
    WARP_ROW_MAX,
    KernelError,
    function,
    grid_1d,
    kernel_name,
    launch,
    module,
    sm_count,
    source,
)


def reset_caches() -> None:
    """Forget every compiled module, kernel handle, SM count, pointer table and uploaded
    hyperparameter row: they belong to the CUDA runtime (and devices) they were made with. The
    emulated CUDA device calls this when it is installed or removed."""
    for cache in (runtime._modules, runtime._functions, runtime._sm_count):
        cache.clear()
    for cache in (optim._tables, optim._hp_cache):
        cache.clear()


__all__ = [
    "launchers",
    "reset_caches",
    "BLOCK",
    "CHUNK",
    "KERNELS",
    "KERNEL_DIR",
    "OPTIONS",
    "WARP_ROW_MAX",
    "KernelError",
    "adagrad_step",
    "adam_step",
    "function",
    "grad_clamp",
    "grad_norm_partial",
    "grad_scale",
    "grid_1d",
    "kernel_name",
    "launch",
    "matmul_tiled",
    "module",
    "rmsprop_step",
    "sgd_step",
    "sm_count",
    "source",
]
