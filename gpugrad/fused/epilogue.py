"""bias_act: a linear layer's epilogue, act(z + b), as one op."""

from __future__ import annotations

from .. import activations
from ..dispatch import op


def _needs_pre(attrs) -> bool:
    """GELU and SiLU: the derivative is a function of the pre-activation, not the output."""
    return attrs["activation"] in activations.FROM_INPUT


@op(
    "bias_act",
    saves=("out", "activation", "negative_slope", "needs_grad", "z", "b"),
    # z and b are kept only for the activations whose derivative needs z + b
    save_if={"z": _needs_pre, "b": _needs_pre},
    # dz is dout itself for the identity; db is always a new column sum
    owns=(False, True),
)
def bias_act(xp, z, b, *, activation="relu", negative_slope=0.01):
    """act(z + b) for z (..., C) and a bias b (C,): a Linear layer's epilogue in one pass.

    Saves the output, and for GELU and SiLU also the inputs: relu, leaky_relu, tanh and sigmoid
    have derivatives that are functions of the output (relu: out > 0, tanh: 1 - out^2, sigmoid:
    out (1 - out)); GELU's and SiLU's need z + b, which backward recomputes from z and b (the
    matmul output and the bias, alive anyway) rather than keeping a copy of it
    (``gpugrad.activations``).
    """
    activations.check(activation, negative_slope)
    return activations.forward(xp, z + b, activation, negative_slope)


@bias_act.backward
def bias_act_backward(xp, dout, out, activation, negative_slope, needs, z=None, b=None):
    if activation in activations.FROM_INPUT:
        slope = activations.derivative_from_input(xp, z + b, activation)
    else:
        slope = activations.derivative(xp, out, activation, negative_slope)
    dz = dout if slope is None else dout * slope
    # Sum over every axis but the last: also right for C == 0 or N == 0, where a reshape to
    # (-1, C) is ambiguous.
    db = dz.sum(axis=tuple(range(dz.ndim - 1))) if needs[1] else None
    return (dz if needs[0] else None), db
