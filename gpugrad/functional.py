"""Activations, softmax, linear and losses with PyTorch's names and semantics.

``import gpugrad.functional as F``. Losses validate their inputs here (shapes, dtypes, target
ranges) so that the fused ops in ``fused.py`` only ever see clean data.
"""

from __future__ import annotations

import numpy as np

from . import fused, ops
from .aliases import axis_keywords
from .dispatch import apply
from .tensor import Tensor, tensor

_REDUCTIONS = ("mean", "sum", "none")


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x)


def relu(x: Tensor) -> Tensor:
    """max(x, 0); the gradient at exactly 0 is 0."""
    return apply(ops.relu, (_t(x),), {})


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), computed without overflow for any x."""
    return apply(ops.sigmoid, (_t(x),), {})


def tanh(x: Tensor) -> Tensor:
    return apply(ops.tanh, (_t(x),), {})


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return apply(ops.leaky_relu, (_t(x),), {"negative_slope": negative_slope})


@axis_keywords
def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x - max) / sum(exp(x - max)) along ``axis``."""
    return apply(ops.softmax, (_t(x),), {"axis": axis})


@axis_keywords
def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis``, stable for logits of any size."""
    return apply(ops.log_softmax, (_t(x),), {"axis": axis})


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, with weight shaped (out_features, in_features) as in PyTorch.

    >>> import gpugrad as gg
    >>> linear(gg.ones((2, 3)), gg.ones((4, 3)), gg.zeros(4)).shape
    (2, 4)
    """
    x, weight = _t(x), _t(weight)
    out = apply(ops.linear, (x, weight), {})  # one node: x @ weight.T
    if bias is None:
        return out
    bias = _t(bias)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias {bias.shape} must be ({weight.shape[0]},)")
    # the bias add as the fused epilogue (one pass; backward gives d(out) and the column sum)
    return apply(fused.bias_act, (out, bias), {"activation": "identity"})


# ----------------------------------------------------------------------------- losses


def _capturing() -> bool:
    """True while gg.cuda.graph captures a step: checks that read GPU values must wait."""
    from .cuda_graph import is_capturing

    return is_capturing()


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _same_shape_pair(name, input, target):
    input, target = _t(input), _t(target)
    if input.shape != target.shape:
        raise ValueError(
            f"{name}: input {input.shape} and target {target.shape} have different shapes; "
            "reshape one (broadcasting here is almost always a bug)"
        )
    if input.dtype.kind != "f":
        raise TypeError(f"{name}: input must be floating point, got {input.dtype}")
    if target.dtype != input.dtype:
        target = target.to(input.dtype)
    return input, target


def _class_targets(name, scores, target, ignore_index=None):
    """Check (N, C) scores against (N,) integer class targets; (C,) and () lift to a batch."""
    scores, target = _t(scores), _t(target)
    if scores.ndim == 1:
        scores, target = scores.reshape(1, -1), target.reshape(1)
        single = True
    else:
        single = False
    if scores.ndim != 2:
        raise ValueError(f"{name}: expected scores of shape (N, C) or (C,), got {scores.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"{name}: targets must be integer class indices, got dtype {target.dtype}; "
            "use gg.tensor(labels, dtype=gg.int64)"
        )
    if target.shape != (scores.shape[0],):
        raise ValueError(
            f"{name}: scores {scores.shape} need targets of shape ({scores.shape[0]},), "
            f"got {target.shape}"
        )
    t = target.data
    bad = (t < 0) | (t >= scores.shape[1])
    if ignore_index is not None:
        bad &= t != ignore_index
    if not _capturing() and bool(bad.any()):  # the check reads the GPU: not in a CUDA graph
        first = int(t[bad][0])
        raise IndexError(
            f"{name}: target {first} is out of range for {scores.shape[1]} classes "
            f"(valid: 0..{scores.shape[1] - 1}"
            + (f", or ignore_index={ignore_index})" if ignore_index is not None else ")")
        )
    return scores, target, single


def cross_entropy(
    input: Tensor, target: Tensor, reduction: str = "mean", ignore_index: int = -100
) -> Tensor:
    """Softmax cross-entropy of logits (N, C) against integer targets (N,).

    loss_n = logsumexp(x_n) - x_n[t_n]; "mean" averages over targets != ignore_index.
    Fused: the forward saves (softmax - onehot) / N, so backward is one multiply.
    """
    _check_reduction("cross_entropy", reduction)
    scores, target, single = _class_targets("cross_entropy", input, target, ignore_index)
    out = apply(
        fused.cross_entropy,
        (scores, target),
        {"reduction": reduction, "ignore_index": ignore_index},
    )
    return out.reshape(()) if single and reduction == "none" else out


def binary_cross_entropy_with_logits(
    input: Tensor, target: Tensor, reduction: str = "mean"
) -> Tensor:
    """BCE on logits s: max(s, 0) - s*t + log(1 + exp(-|s|)); its gradient is sigmoid(s) - t."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    s, t = _same_shape_pair("binary_cross_entropy_with_logits", input, target)
    return apply(fused.binary_cross_entropy_with_logits, (s, t), {"reduction": reduction})


def binary_cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """BCE on probabilities y in [0, 1]: -(t log y + (1 - t) log(1 - y)), logs clamped at -100."""
    _check_reduction("binary_cross_entropy", reduction)
    y, t = _same_shape_pair("binary_cross_entropy", input, target)
    if not _capturing() and bool(((y.data < 0) | (y.data > 1)).any()):
        raise ValueError(
            "binary_cross_entropy: input values must lie in [0, 1] (probabilities); "
            "for logits use binary_cross_entropy_with_logits"
        )
    return apply(fused.binary_cross_entropy, (y, t), {"reduction": reduction})


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """(input - target)^2 averaged ("mean"), summed ("sum", the L2 loss) or per element."""
    _check_reduction("mse_loss", reduction)
    y, t = _same_shape_pair("mse_loss", input, target)
    return apply(fused.mse_loss, (y, t), {"reduction": reduction})


def multi_margin_loss(
    input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Multi-class hinge loss: sum_{i != y} max(0, margin - x[y] + x[i])^p / C per sample."""
    _check_reduction("multi_margin_loss", reduction)
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: p must be 1 or 2, got {p}")
    scores, target, single = _class_targets("multi_margin_loss", input, target)
    out = apply(
        fused.multi_margin_loss,
        (scores, target),
        {"p": p, "margin": float(margin), "reduction": reduction},
    )
    return out.reshape(()) if single and reduction == "none" else out


def one_hot(target: Tensor, num_classes: int) -> Tensor:
    """(N,) integer labels -> (N, num_classes) float32 one-hot rows."""
    t = _t(target)
    xp = t._xp
    out = xp.zeros((*t.shape, num_classes), dtype=np.float32)
    xp.put_along_axis(out, t.data[..., None].astype(np.int64), 1, axis=-1)
    return Tensor._wrap(out, t.device)
