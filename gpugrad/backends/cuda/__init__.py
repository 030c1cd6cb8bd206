"""CUDA fast paths: the kernel runtime, the op launchers (registered on the op table when this
package is imported) and the multi-tensor optimizer steps."""

from . import launchers  # noqa: F401  (registers the launchers on their ops)
from .launchers import matmul_tiled
from .optim import CHUNK, adam_step, sgd_step
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

__all__ = [
    "BLOCK",
    "CHUNK",
    "KERNELS",
    "KERNEL_DIR",
    "OPTIONS",
    "WARP_ROW_MAX",
    "KernelError",
    "adam_step",
    "function",
    "grid_1d",
    "kernel_name",
    "launch",
    "matmul_tiled",
    "module",
    "sgd_step",
    "sm_count",
    "source",
]
