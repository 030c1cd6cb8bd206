"""Elementwise losses: input and target of one shape, a loss per element, then the reduction.

BCE on logits (with PyTorch's pos_weight and weight) and on probabilities, MSE, L1, and Huber
(which is also smooth L1). "mean" divides by the number of elements, weighted or not.
"""

from __future__ import annotations

from ..dispatch import op
from ._common import _in_float32, _reduce, _reduced, _scale


def _bce_with_logits_composed(xp, logits, targets, *, reduction="mean", pos_weight=None,
                              weight=None):  # fmt: skip
    s, t = logits, targets
    if pos_weight is None:
        per_item = xp.maximum(s, 0) - s * t + xp.log(1 + xp.exp(-xp.abs(s)))
    else:
        softplus_neg = xp.log(1 + xp.exp(-xp.abs(s))) + xp.maximum(-s, 0)  # -log sigmoid(s)
        per_item = (1 - t) * s + (1 + (xp.asarray(pos_weight) - 1) * t) * softplus_neg
    if weight is not None:
        per_item = per_item * xp.asarray(weight)
    return _reduced(per_item, reduction, s.size)


@op(
    "binary_cross_entropy_with_logits",
    saves=(
        "dlogits",
        "dtargets",
        "logits",
        "scale",
        "targets",
        "reduction",
        "pos_weight",
        "weight",
    ),  # fmt: skip
    owns=True,
    composed=_bce_with_logits_composed,
)
def binary_cross_entropy_with_logits(xp, logits, targets, *, reduction="mean", pos_weight=None,
                                     weight=None):  # fmt: skip
    """max(s, 0) - s*t + log1p(exp(-|s|)): finite for any logit; d/ds = sigmoid(s) - t.

    With ``pos_weight`` (broadcast over the last axis, PyTorch's): (1 - t) s + (1 + (pw - 1) t)
    softplus(-s); ``weight`` multiplies each element's loss.
    """
    if logits.dtype == xp.float16:
        attrs = {"reduction": reduction, "pos_weight": pos_weight, "weight": weight}
        return _in_float32(xp, binary_cross_entropy_with_logits, (logits, targets), attrs)
    s, t = logits, targets
    e = xp.exp(-xp.abs(s))
    sig = xp.where(s >= 0, 1 / (1 + e), e / (1 + e))
    scale = _scale(reduction, s.size)
    dtargets = None  # the common case: d/dt = -s, computed in backward from the saved logits
    if pos_weight is None:
        per_item = xp.maximum(s, 0) - s * t + xp.log1p(e)
        dlogits = sig - t
    else:
        softplus_neg = xp.log1p(e) + xp.maximum(-s, 0)
        lw = 1 + (pos_weight - 1) * t
        per_item = (1 - t) * s + lw * softplus_neg
        dlogits = (1 - t) - lw * (1 - sig)
        dtargets = -s + (pos_weight - 1) * softplus_neg
    if weight is not None:
        per_item = per_item * weight
        dlogits = dlogits * weight
        dtargets = -s * weight if dtargets is None else dtargets * weight
    dlogits = (dlogits * scale).astype(s.dtype)
    if dtargets is not None:
        dtargets = (dtargets * scale).astype(s.dtype)
    out = _reduce(xp, per_item.astype(s.dtype), reduction, s.size)
    return out, {"dlogits": dlogits, "dtargets": dtargets, "scale": scale}


@binary_cross_entropy_with_logits.backward
def binary_cross_entropy_with_logits_backward(xp, dout, dlogits, dtargets, logits, scale,
                                              *_for_composed):  # fmt: skip
    dt = -logits * (scale * dout) if dtargets is None else dtargets * dout
    return dlogits * dout, dt


def _bce_composed(xp, input, targets, *, reduction="mean"):
    y, t = input, targets
    log_y = xp.maximum(xp.log(y), -100)
    log_1my = xp.maximum(xp.log(1 - y), -100)
    return _reduced(-(t * log_y + (1 - t) * log_1my), reduction, y.size)


@op(
    "binary_cross_entropy",
    saves=("dinput", "dtarget", "input", "targets", "reduction"),
    owns=True,
    composed=_bce_composed,
)
def binary_cross_entropy(xp, input, targets, *, reduction="mean"):
    """-(t log y + (1 - t) log(1 - y)) on probabilities; logs clamped at -100 as in PyTorch."""
    if input.dtype == xp.float16:
        return _in_float32(xp, binary_cross_entropy, (input, targets), {"reduction": reduction})
    y, t = input, targets
    log_y = xp.maximum(xp.log(y), -100)  # log(0) = -inf, clamped (no warning while ops run)
    log_1my = xp.maximum(xp.log1p(-y), -100)
    per_item = -(t * log_y + (1 - t) * log_1my)
    scale = xp.asarray(_scale(reduction, y.size), y.dtype)
    dinput = (y - t) / xp.maximum(y * (1 - y), 1e-12) * scale
    dtarget = (log_1my - log_y) * scale
    return _reduce(xp, per_item, reduction, y.size), {"dinput": dinput, "dtarget": dtarget}


@binary_cross_entropy.backward
def binary_cross_entropy_backward(xp, dout, dinput, dtarget, *_for_composed):
    return dinput * dout, dtarget * dout


def _mse_composed(xp, input, targets, *, reduction="mean"):
    diff = input - targets
    return _reduced(diff * diff, reduction, diff.size)


@op(
    "mse_loss",
    saves=("dinput", "input", "targets", "reduction"),
    owns=True,
    composed=_mse_composed,
)
def mse_loss(xp, input, targets, *, reduction="mean"):
    """(y - t)^2, summed or averaged; d/dy = 2 (y - t) / N for "mean"."""
    if input.dtype == xp.float16:
        return _in_float32(xp, mse_loss, (input, targets), {"reduction": reduction})
    diff = input - targets
    dinput = diff * xp.asarray(2 * _scale(reduction, diff.size), diff.dtype)
    return _reduce(xp, diff * diff, reduction, diff.size), {"dinput": dinput}


@mse_loss.backward
def mse_loss_backward(xp, dout, dinput, *_for_composed):
    d = dinput * dout
    return d, -d


def _l1_composed(xp, input, targets, *, reduction="mean"):
    return _reduced(xp.abs(input - targets), reduction, input.size)


@op(
    "l1_loss",
    saves=("dinput", "input", "targets", "reduction"),
    owns=True,
    composed=_l1_composed,
)
def l1_loss(xp, input, targets, *, reduction="mean"):
    """|y - t|, summed or averaged; d/dy = sign(y - t) / N, 0 where y == t (PyTorch's)."""
    if input.dtype == xp.float16:
        return _in_float32(xp, l1_loss, (input, targets), {"reduction": reduction})
    diff = input - targets
    dinput = xp.sign(diff) * xp.asarray(_scale(reduction, diff.size), diff.dtype)
    return _reduce(xp, xp.abs(diff), reduction, diff.size), {"dinput": dinput}


l1_loss.backward(mse_loss_backward)  # the saved d/dy times dout, and its negative for t


def _huber_composed(xp, input, targets, *, delta=1.0, reduction="mean", smooth_l1=False):
    diff = input - targets
    a = xp.abs(diff)
    per_item = xp.where(a < delta, 0.5 * diff * diff, delta * (a - 0.5 * delta))
    return _reduced(per_item / delta if smooth_l1 else per_item, reduction, input.size)


@op(
    "huber_loss",
    saves=("dinput", "input", "targets", "delta", "reduction", "smooth_l1"),
    owns=True,
    composed=_huber_composed,
)
def huber_loss(xp, input, targets, *, delta=1.0, reduction="mean", smooth_l1=False):
    """0.5 d^2 where |d| < delta, else delta (|d| - delta/2), with d = y - t: quadratic near
    0, linear beyond; d/dy = clip(d, -delta, delta). ``smooth_l1=True`` divides by delta:
    PyTorch's smooth_l1_loss with beta = delta."""
    if input.dtype == xp.float16:
        attrs = {"delta": delta, "reduction": reduction, "smooth_l1": smooth_l1}
        return _in_float32(xp, huber_loss, (input, targets), attrs)
    diff = input - targets
    a = xp.abs(diff)
    per_item = xp.where(a < delta, 0.5 * diff * diff, delta * (a - 0.5 * delta))
    factor = _scale(reduction, diff.size) / (delta if smooth_l1 else 1.0)
    dinput = xp.clip(diff, -delta, delta) * xp.asarray(factor, diff.dtype)
    if smooth_l1:
        per_item = per_item / delta
    out = _reduce(xp, per_item.astype(diff.dtype), reduction, diff.size)
    return out, {"dinput": dinput}


huber_loss.backward(mse_loss_backward)
