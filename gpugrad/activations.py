"""The activations of gpugrad's fused bias + activation: one table for every implementation.

Each activation has a name (what ``nn.MLP``, ``F``, ``gpugrad train --activation`` accept), a
code (what the Numba kernels and the CUDA kernels in ``kernels/bias_act.cu`` switch on; the
CUDA source receives them as ``#define GG_ACT_<NAME> <code>`` lines from ``cuda_defines()``),
its value, and its derivative. For most the derivative is a function of the output, which is
all the fused backward keeps; GELU and SiLU are not monotonic, so their output does not
determine their input, and their derivative is written in terms of the pre-activation
(``FROM_INPUT``): the fused op keeps its inputs for those, and only for those. This module
imports nothing from gpugrad: every layer may read it.
"""

from __future__ import annotations

import math

# name -> code. The order is the kernels' switch order; codes are never reused. "gelu" is the
# exact x * Phi(x) (PyTorch's approximate="none"), "gelu_tanh" its tanh approximation.
CODES = {
    "identity": 0,
    "relu": 1,
    "leaky_relu": 2,
    "sigmoid": 3,
    "tanh": 4,
    "gelu": 5,
    "gelu_tanh": 6,
    "silu": 7,
}
NAMES = tuple(CODES)
# What a hidden layer of an MLP may use (the identity is the output layer's).
HIDDEN = tuple(name for name in NAMES if name != "identity")
# Activations whose derivative needs the pre-activation, not the output.
FROM_INPUT = frozenset({"gelu", "gelu_tanh", "silu"})

SQRT_HALF = math.sqrt(0.5)  # GELU's erf argument scale
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)  # the standard normal density at 0
TANH_SCALE = math.sqrt(2 / math.pi)  # GELU's tanh approximation: tanh(k (y + c y^3))
TANH_CUBIC = 0.044715


def check(activation: str, negative_slope: float = 0.01, where: str = "bias_act") -> int:
    """The code of ``activation``; raises ValueError naming ``where`` for an unknown name or a
    slope the output-based derivative cannot handle."""
    if activation not in CODES:
        raise ValueError(f"{where}: unknown activation {activation!r}; expected one of {NAMES}")
    if activation == "leaky_relu" and negative_slope < 0:
        # The derivative is read off the output's sign, which a negative slope flips.
        raise ValueError(
            f"{where}: leaky_relu's backward reads the sign of the output, so negative_slope "
            f"must be >= 0, got {negative_slope}"
        )
    return CODES[activation]


def erf(xp, x):
    """The error function of an array (NumPy, CuPy) or of a recorded tensor.

    A namespace of recorded ops (``gpugrad.graph``) offers ``erf`` as an op of the table, so
    the result can be differentiated again. NumPy has no erf: the C library's ``math.erf``
    runs per element (exact, slow; the Numba and CUDA paths are the fast ones); CuPy's comes
    from ``cupyx.scipy.special``.
    """
    recorded = getattr(xp, "erf", None)
    if recorded is not None:
        return recorded(x)
    if xp.__name__ == "cupy":
        from cupyx.scipy.special import erf as cupy_erf

        return cupy_erf(x)
    return xp.asarray(_np_erf(x), dtype=x.dtype)


def _np_erf(x):
    import numpy as np

    return np.frompyfunc(math.erf, 1, 1)(x)


def sigmoid(xp, y):
    """1 / (1 + exp(-y)) sign-split: exp never overflows, sigmoid(+-1e4) is 1 or 0."""
    e = xp.exp(-xp.abs(y))
    return xp.where(y >= 0, 1 / (1 + e), e / (1 + e))


def forward(xp, y, activation: str, negative_slope: float = 0.0):
    """act(y) for an array ``y`` of any shape (the reference every kernel is tested against)."""
    if activation == "relu":
        return xp.maximum(y, 0)
    if activation == "leaky_relu":
        return xp.where(y > 0, y, y * negative_slope)
    if activation == "tanh":
        return xp.tanh(y)
    if activation == "sigmoid":
        return sigmoid(xp, y)
    if activation == "gelu":
        return y * (0.5 + 0.5 * erf(xp, y * SQRT_HALF))
    if activation == "gelu_tanh":
        return 0.5 * y * (1 + xp.tanh(TANH_SCALE * (y + TANH_CUBIC * y * y * y)))
    if activation == "silu":
        return y * sigmoid(xp, y)
    return y


def derivative_from_input(xp, y, activation: str):
    """d act / d y as a function of the pre-activation y, for the ``FROM_INPUT`` activations:
    gelu: Phi(y) + y phi(y); gelu_tanh: the derivative of its formula; silu: s (1 + y (1 - s))
    with s = sigmoid(y)."""
    if activation == "gelu":
        cdf = 0.5 + 0.5 * erf(xp, y * SQRT_HALF)
        return cdf + y * (INV_SQRT_2PI * xp.exp(-0.5 * y * y))
    if activation == "gelu_tanh":
        y2 = y * y
        t = xp.tanh(TANH_SCALE * (y + TANH_CUBIC * y2 * y))
        return 0.5 * (1 + t) + (0.5 * TANH_SCALE) * y * (1 - t * t) * (1 + 3 * TANH_CUBIC * y2)
    if activation == "silu":
        s = sigmoid(xp, y)
        return s * (1 + y * (1 - s))
    raise ValueError(f"{activation!r}: its derivative is read from the output; see derivative()")


def derivative(xp, out, activation: str, negative_slope: float):
    """d act / d y as a function of out = act(y), for every activation not in ``FROM_INPUT``;
    None for the identity (a factor of 1)."""
    if activation == "relu":
        return out > 0  # relu'(0) = 0, as in PyTorch
    if activation == "leaky_relu":
        return xp.where(out > 0, 1, negative_slope).astype(out.dtype)
    if activation == "tanh":
        return 1 - out * out
    if activation == "sigmoid":
        return out * (1 - out)
    if activation in FROM_INPUT:
        raise ValueError(f"{activation!r}: its derivative needs the input; derivative_from_input")
    return None


def cuda_defines() -> str:
    """``#define GG_ACT_RELU 1`` lines for every activation, and GELU's constants, prepended
    to CUDA sources."""
    codes = "".join(f"#define GG_ACT_{name.upper()} {code}\n" for name, code in CODES.items())
    constants = {
        "SQRT_HALF": SQRT_HALF,
        "INV_SQRT_2PI": INV_SQRT_2PI,
        "TANH_SCALE": TANH_SCALE,
        "TANH_CUBIC": TANH_CUBIC,
    }
    return codes + "".join(f"#define GG_{k} {v!r}\n" for k, v in constants.items())
