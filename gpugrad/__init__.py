"""gpugrad: reverse-mode autodiff on NumPy (CPU) and CuPy (GPU) arrays with fused kernels.

>>> import gpugrad as gg
>>> x, y, z = (gg.tensor(v, requires_grad=True) for v in (1.0, -3.0, 4.0))
>>> f = (x + y) * z
>>> f.backward()
>>> f.item(), x.grad.item(), y.grad.item(), z.grad.item()
(-8.0, 4.0, 4.0, -2.0)
"""

from . import aliases, autograd, backends, cuda, distributed, functional, nn, optim, viz  # noqa: F401
from .anomaly import detect_anomaly
from .autograd import grad
from .cpu_replay import graph as cpu_graph
from .creation import (
    abs,
    arange,
    broadcast_to,
    clip,
    concatenate,
    exp,
    expand_dims,
    eye,
    from_dlpack,
    from_numpy,
    full,
    log,
    manual_seed,
    matmul,
    maximum,
    mean,
    minimum,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    relu,
    reshape,
    sigmoid,
    sqrt,
    squeeze,
    stack,
    sum,
    tanh,
    transpose,
    where,
    zeros,
    zeros_like,
)
from .crosscheck import CrossCheckError, crosscheck
from .device import OutOfMemoryError, cuda_device_count, cuda_is_available
from .dispatch import OPS
from .engine import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .serialization import load, save
from .state import config
from .tensor import Tensor, bool_, float16, float32, float64, int32, int64, tensor

__version__ = "0.1.0"

__all__ = [
    "OPS",
    "GradcheckError",
    "autograd",
    "OutOfMemoryError",
    "Tensor",
    "abs",
    "arange",
    "bool_",
    "broadcast_to",
    "clip",
    "concatenate",
    "config",
    "CrossCheckError",
    "cpu_graph",
    "crosscheck",
    "cuda",
    "cuda_device_count",
    "cuda_is_available",
    "detect_anomaly",
    "distributed",
    "enable_grad",
    "exp",
    "expand_dims",
    "eye",
    "float16",
    "float32",
    "float64",
    "from_dlpack",
    "from_numpy",
    "full",
    "functional",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "int32",
    "int64",
    "is_grad_enabled",
    "load",
    "log",
    "manual_seed",
    "matmul",
    "maximum",
    "mean",
    "minimum",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "rand",
    "randint",
    "randn",
    "relu",
    "reshape",
    "save",
    "set_grad_enabled",
    "sigmoid",
    "sqrt",
    "squeeze",
    "stack",
    "sum",
    "tanh",
    "tensor",
    "transpose",
    "viz",
    "where",
    "zeros",
    "zeros_like",
]


# PyTorch's spellings (gg.cat, gg.double, ...): the one table is gpugrad/aliases.py
for _torch_name, _ours in aliases.FUNCTIONS.items():
    globals()[_torch_name] = globals()[_ours]
__all__ += list(aliases.FUNCTIONS)


def __getattr__(name):
    # Reached only for a name gpugrad does not have: say what PyTorch's name is here.
    if name.startswith("_"):
        raise AttributeError(f"module 'gpugrad' has no attribute {name!r}")
    raise aliases.attribute_error("module 'gpugrad'", name, aliases.MODULE_HINTS, __all__)
