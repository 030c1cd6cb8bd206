"""The loss functions of ``gpugrad.functional`` (``F.cross_entropy``, ``F.mse_loss``, ...).

PyTorch's names, arguments and definitions. Each validates its inputs here (shapes, dtypes,
devices, target ranges) and then applies one fused op of ``fused/``, which therefore only ever
sees clean data. Kept apart from ``functional.py`` for size; import them from there.
"""

from __future__ import annotations

import numpy as np

from . import fused
from .cuda_graph import is_capturing
from .dispatch import apply
from .tensor import Tensor, tensor

_REDUCTIONS = ("mean", "sum", "none")


def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else tensor(x)


def _check_reduction(name, reduction):
    if not isinstance(reduction, str):
        # torch's third positional argument is the class weight; here it is the reduction
        raise ValueError(
            f"{name}: reduction must be one of {_REDUCTIONS}, got a {type(reduction).__name__}; "
            "pass class weights by keyword (weight=...)"
        )
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
    if scores.dtype.kind != "f":
        raise TypeError(f"{name}: scores must be floating point, got {scores.dtype}")
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
    if not is_capturing() and bool(bad.any()):  # the check reads the GPU: not in a CUDA graph
        first = int(t[bad][0])
        raise IndexError(
            f"{name}: target {first} is out of range for {scores.shape[1]} classes "
            f"(valid: 0..{scores.shape[1] - 1}"
            + (f", or ignore_index={ignore_index})" if ignore_index is not None else ")")
        )
    return scores, target, single


def _weights(name, what, weight, like, shape=None):
    """A weight tensor as an array of ``like``'s dtype on its device (None passes): class
    weights of shape (C,) when ``shape`` is given, else anything that broadcasts to ``like``."""
    if weight is None:
        return None
    w = _t(weight)
    if w.device != like.device:
        raise RuntimeError(
            f"{name}: {what} is on {w.device} but the input is on {like.device}; move it with "
            f".to({like.device!r})"
        )
    if shape is not None and w.shape != shape:
        raise ValueError(f"{name}: {what} must have shape {shape} (one per class), got {w.shape}")
    if shape is None and not _broadcasts(w.shape, like.shape):
        raise ValueError(f"{name}: {what} {w.shape} does not broadcast to the input {like.shape}")
    return w.data.astype(like.dtype, copy=False)


def _broadcasts(shape, to) -> bool:
    try:
        return np.broadcast_shapes(shape, to) == to
    except ValueError:
        return False


def _lifted(out, single, reduction):
    return out.reshape(()) if single and reduction == "none" else out


def cross_entropy(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    ignore_index: int = -100,
    *,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy of logits (N, C) against integer targets (N,).

    loss_n = logsumexp(x_n) - x_n[t_n], times weight[t_n] with class weights; with
    ``label_smoothing`` e the target is (1 - e) onehot + e / C (PyTorch's definition). "mean"
    divides by the number of targets != ignore_index, or with weights by the sum of their
    weights. Fused: the forward saves the gradient, so backward is one multiply.
    """
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    scores, target, single = _class_targets("cross_entropy", input, target, ignore_index)
    attrs = {"reduction": reduction, "ignore_index": ignore_index}
    w = _weights("cross_entropy", "weight", weight, scores, (scores.shape[1],))
    if w is not None:
        attrs["weight"] = w
    if label_smoothing:
        attrs["label_smoothing"] = float(label_smoothing)
    return _lifted(apply(fused.cross_entropy, (scores, target), attrs), single, reduction)


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C) (``log_softmax``'s output) against
    integer targets (N,): -weight[t_n] input[n, t_n]; "mean" divides by the summed weights of
    the targets != ignore_index (their number without weights)."""
    _check_reduction("nll_loss", reduction)
    scores, target, single = _class_targets("nll_loss", input, target, ignore_index)
    attrs = {"reduction": reduction, "ignore_index": ignore_index}
    w = _weights("nll_loss", "weight", weight, scores, (scores.shape[1],))
    if w is not None:
        attrs["weight"] = w
    return _lifted(apply(fused.nll_loss, (scores, target), attrs), single, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    *,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
) -> Tensor:
    """BCE on logits s: max(s, 0) - s*t + log(1 + exp(-|s|)); its gradient is sigmoid(s) - t.

    ``pos_weight`` (broadcast against the input, typically one per class on the last axis)
    multiplies the positive term: (1 - t) s + (1 + (pos_weight - 1) t) softplus(-s);
    ``weight`` multiplies each element's loss. "mean" divides by the number of elements.
    """
    name = "binary_cross_entropy_with_logits"
    _check_reduction(name, reduction)
    s, t = _same_shape_pair(name, input, target)
    attrs = {"reduction": reduction}
    for key, value in (("weight", weight), ("pos_weight", pos_weight)):
        value = _weights(name, key, value, s)
        if value is not None:
            attrs[key] = value
    return apply(fused.binary_cross_entropy_with_logits, (s, t), attrs)


def binary_cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """BCE on probabilities y in [0, 1]: -(t log y + (1 - t) log(1 - y)), logs clamped at -100."""
    _check_reduction("binary_cross_entropy", reduction)
    y, t = _same_shape_pair("binary_cross_entropy", input, target)
    if not is_capturing() and bool(((y.data < 0) | (y.data > 1)).any()):
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


def l1_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """|input - target| averaged, summed or per element; the gradient at a tie is 0."""
    _check_reduction("l1_loss", reduction)
    y, t = _same_shape_pair("l1_loss", input, target)
    return apply(fused.l1_loss, (y, t), {"reduction": reduction})


def huber_loss(
    input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0
) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - delta / 2), d = input - target: MSE near
    the target, L1 far from it (outliers pull with a bounded gradient)."""
    _check_reduction("huber_loss", reduction)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be > 0, got {delta}")
    y, t = _same_shape_pair("huber_loss", input, target)
    return apply(fused.huber_loss, (y, t), {"reduction": reduction, "delta": float(delta)})


def smooth_l1_loss(
    input: Tensor, target: Tensor, reduction: str = "mean", beta: float = 1.0
) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - beta / 2: ``huber_loss / beta``, and the L1
    loss for beta = 0 (PyTorch's)."""
    _check_reduction("smooth_l1_loss", reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction)
    y, t = _same_shape_pair("smooth_l1_loss", input, target)
    attrs = {"reduction": reduction, "delta": float(beta), "smooth_l1": True}
    return apply(fused.huber_loss, (y, t), attrs)


def multi_margin_loss(
    input: Tensor,
    target: Tensor,
    p: int = 1,
    margin: float = 1.0,
    reduction: str = "mean",
    *,
    weight: Tensor | None = None,
) -> Tensor:
    """Multi-class hinge loss: sum_{i != y} max(0, margin - x[y] + x[i])^p / C per sample,
    times weight[y] with class weights."""
    _check_reduction("multi_margin_loss", reduction)
    if p not in (1, 2):
        raise ValueError(f"multi_margin_loss: p must be 1 or 2, got {p}")
    scores, target, single = _class_targets("multi_margin_loss", input, target)
    attrs = {"p": p, "margin": float(margin), "reduction": reduction}
    w = _weights("multi_margin_loss", "weight", weight, scores, (scores.shape[1],))
    if w is not None:
        attrs["weight"] = w
    return _lifted(apply(fused.multi_margin_loss, (scores, target), attrs), single, reduction)
