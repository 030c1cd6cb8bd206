"""The op table: every primitive, forward and backward together (fused ops: ``fused/``).

Each forward is written against the array module ``xp`` (NumPy or CuPy) and is the reference
that any device fast path is tested against. Backward gets the incoming gradient ``dout`` and
what the entry declared in ``saves``, and returns one gradient per input. Gradients may keep the
broadcast shape of the output: the engine sums them back to each input's shape.

Conventions at kinks (PyTorch's): relu'(0) = 0, abs'(0) = 0, leaky_relu'(0) = negative_slope,
clip passes the gradient at its bounds, max/min/maximum/minimum split the gradient evenly
between tied elements. At exact zeros IEEE results stand (log(0) = -inf, sqrt'(0) = inf).
"""

from .arithmetic import add, div, linear, matmul, mul, neg, pow, sub
from .elementwise import (
    abs,
    cast,
    clip,
    erf,
    exp,
    gelu,
    leaky_relu,
    log,
    maximum,
    minimum,
    relu,
    sigmoid,
    silu,
    sqrt,
    tanh,
    where,
)
from .reductions import max, mean, min, sum, var
from .shapes import (
    broadcast_to,
    concatenate,
    embedding,
    expand_dims,
    getitem,
    reshape,
    scatter_add,
    setitem,
    squeeze,
    stack,
    to_device,
    transpose,
)
from .softmax import log_softmax, softmax

__all__ = [
    "abs",
    "add",
    "broadcast_to",
    "cast",
    "clip",
    "concatenate",
    "div",
    "embedding",
    "erf",
    "exp",
    "expand_dims",
    "gelu",
    "getitem",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mul",
    "neg",
    "pow",
    "relu",
    "reshape",
    "scatter_add",
    "setitem",
    "sigmoid",
    "silu",
    "softmax",
    "sqrt",
    "squeeze",
    "stack",
    "sub",
    "sum",
    "tanh",
    "to_device",
    "transpose",
    "var",
    "where",
]
