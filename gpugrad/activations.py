"""The activations of gpugrad's fused bias + activation: one table for every implementation.

Each activation has a name (what ``nn.MLP``, ``F``, ``gpugrad train --activation`` accept), a
code (what the Numba kernels and the CUDA kernels in ``kernels/bias_act.cu`` switch on; the
CUDA source receives them as ``#define GG_ACT_<NAME> <code>`` lines from ``cuda_defines()``),
its value, and its derivative written in terms of the activation's output, which is all the
fused backward keeps. This module imports nothing from gpugrad: every layer may read it.
"""

from __future__ import annotations

# name -> code. The order is the kernels' switch order; codes are never reused.
CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}
NAMES = tuple(CODES)
# What a hidden layer of an MLP may use (the identity is the output layer's).
HIDDEN = tuple(name for name in NAMES if name != "identity")


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


def forward(xp, y, activation: str, negative_slope: float):
    """act(y) for an array ``y`` of any shape (the reference every kernel is tested against)."""
    if activation == "relu":
        return xp.maximum(y, 0)
    if activation == "leaky_relu":
        return xp.where(y > 0, y, y * negative_slope)
    if activation == "tanh":
        return xp.tanh(y)
    if activation == "sigmoid":
        e = xp.exp(-xp.abs(y))  # sign-split: exp never overflows, sigmoid(+-1e4) is 1 or 0
        return xp.where(y >= 0, 1 / (1 + e), e / (1 + e))
    return y


def derivative(xp, out, activation: str, negative_slope: float):
    """d act / d y as a function of out = act(y); None for the identity (a factor of 1)."""
    if activation == "relu":
        return out > 0  # relu'(0) = 0, as in PyTorch
    if activation == "leaky_relu":
        return xp.where(out > 0, 1, negative_slope).astype(out.dtype)
    if activation == "tanh":
        return 1 - out * out
    if activation == "sigmoid":
        return out * (1 - out)
    return None


def cuda_defines() -> str:
    """``#define GG_ACT_RELU 1`` lines for every activation, prepended to CUDA sources."""
    return "".join(f"#define GG_ACT_{name.upper()} {code}\n" for name, code in CODES.items())
