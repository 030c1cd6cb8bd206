"""Fused loss ops: the loss and its gradient in one forward pass.

The gradient of each loss with respect to its input is known while the forward runs, so the
forward computes and saves it already scaled by the reduction (1/N for "mean"); backward only
multiplies by the incoming gradient. These NumPy/CuPy forwards are the references that the Numba
(``backends/cpu.py``) and CUDA (``backends/cuda/``) fast paths registered on them are tested
against.

Shapes: ``cross_entropy`` and ``multi_margin`` take (N, C) scores and (N,) integer targets; the
elementwise losses take two tensors of one shape. Input validation (target ranges, shapes,
dtypes) happens in ``functional.py`` before these run.
"""

from __future__ import annotations

from . import activations
from .dispatch import op


def _scale(reduction, count):
    """The gradient's factor: 1/count for "mean" (0 when nothing counts), else 1."""
    if reduction != "mean":
        return 1.0
    return 1.0 / count if count else 0.0


def _reduce(xp, per_item, reduction, count):
    if reduction == "none":
        return per_item
    total = per_item.sum()
    if reduction == "sum":
        return total
    # The mean of nothing is NaN, as in torch (NumPy's warning is off while ops run).
    return (total / count).astype(per_item.dtype)


def _in_float32(xp, op, arrays, attrs):
    """Run a loss forward on float16 inputs in float32 and hand back float16 results.

    A float16 sum overflows at 65504 and stops resolving additions of 1 past 2048, so a mean
    of squared errors or a batch of log-losses goes to inf or drifts long before the answer
    itself leaves float16's range: losses accumulate in float32.
    """
    up = [a.astype(xp.float32) if a.dtype == xp.float16 else a for a in arrays]
    out, extras = op.fwd(xp, *up, **attrs)

    def down(v):
        return v.astype(xp.float16) if getattr(v, "dtype", None) == xp.float32 else v

    return down(out), {k: down(v) for k, v in extras.items()}


def _times_rows(xp, d, dout):
    """Scale a saved (N, C) gradient by dout: a scalar, or one value per row for "none"."""
    return d * (dout[:, None] if dout.ndim else dout)


# Each loss also has a composed form: the same function written with other ops, against a
# namespace of recorded ops (``gpugrad.graph``). Gradients of gradients differentiate it, since
# the fused backward reads precomputed arrays; so these losses also save their inputs and
# attributes (references to arrays that are alive anyway, no copies).


def _reduced(per_item, reduction, count):
    if reduction == "none":
        return per_item
    total = per_item.sum()
    return total if reduction == "sum" else total / count  # 0 / 0 is NaN, as in the forward


def _cross_entropy_composed(xp, logits, targets, *, reduction="mean", ignore_index=-100):
    valid = targets != ignore_index
    safe = xp.where(valid, targets, 0)
    shifted = logits - logits.max(axis=1, keepdims=True).detach()
    lse = xp.log(xp.exp(shifted).sum(axis=1))
    per_row = xp.where(valid, lse - shifted[xp.arange(logits.shape[0]), safe], 0.0)
    return _reduced(per_row, reduction, int(valid.sum().item()))


@op(
    "cross_entropy",
    saves=("dlogits", "logits", "targets", "reduction", "ignore_index"),
    differentiable=(True, False),
    owns=True,
    composed=_cross_entropy_composed,
)
def cross_entropy(xp, logits, targets, *, reduction="mean", ignore_index=-100):
    """Softmax cross-entropy over classes (axis 1), log-sum-exp stable; saves (p - onehot)/N."""
    if logits.dtype == xp.float16:
        attrs = {"reduction": reduction, "ignore_index": ignore_index}
        return _in_float32(xp, cross_entropy, (logits, targets), attrs)
    n, c = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    exps = xp.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    valid = targets != ignore_index
    safe = xp.where(valid, targets, 0)
    rows = xp.arange(n)
    picked = shifted[rows, safe] - xp.log(sums[:, 0])
    per_row = xp.where(valid, -picked, 0).astype(logits.dtype)
    count = int(valid.sum())
    dlogits = exps / sums
    dlogits[rows, safe] -= 1
    dlogits *= (valid * _scale(reduction, count))[:, None].astype(logits.dtype)
    return _reduce(xp, per_row, reduction, count), {"dlogits": dlogits}


@cross_entropy.backward
def cross_entropy_backward(xp, dout, dlogits, *_for_composed):
    return _times_rows(xp, dlogits, dout), None


def _bce_with_logits_composed(xp, logits, targets, *, reduction="mean"):
    s, t = logits, targets
    per_item = xp.maximum(s, 0) - s * t + xp.log(1 + xp.exp(-xp.abs(s)))
    return _reduced(per_item, reduction, s.size)


@op(
    "binary_cross_entropy_with_logits",
    saves=("dlogits", "logits", "scale", "targets", "reduction"),
    owns=True,
    composed=_bce_with_logits_composed,
)
def binary_cross_entropy_with_logits(xp, logits, targets, *, reduction="mean"):
    """max(s, 0) - s*t + log1p(exp(-|s|)): finite for any logit; d/ds = sigmoid(s) - t."""
    if logits.dtype == xp.float16:
        attrs = {"reduction": reduction}
        return _in_float32(xp, binary_cross_entropy_with_logits, (logits, targets), attrs)
    s, t = logits, targets
    per_item = xp.maximum(s, 0) - s * t + xp.log1p(xp.exp(-xp.abs(s)))
    e = xp.exp(-xp.abs(s))
    sig = xp.where(s >= 0, 1 / (1 + e), e / (1 + e))
    scale = _scale(reduction, s.size)
    dlogits = (sig - t) * xp.asarray(scale, s.dtype)
    return _reduce(xp, per_item, reduction, s.size), {"dlogits": dlogits, "scale": scale}


@binary_cross_entropy_with_logits.backward
def binary_cross_entropy_with_logits_backward(xp, dout, dlogits, logits, scale, *_for_composed):
    return dlogits * dout, -logits * (scale * dout)


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


def _multi_margin_composed(xp, scores, targets, *, p=1, margin=1.0, reduction="mean"):
    n, c = scores.shape
    picked = scores[xp.arange(n), targets]
    gaps = margin - picked.reshape(n, 1) + scores
    others = xp.where(targets.reshape(n, 1) == xp.arange(c), 0.0, 1.0).astype(scores.dtype)
    hinge = gaps.relu() * others  # the target's own column never counts
    per_row = (hinge if p == 1 else hinge * hinge).sum(axis=1) / c
    return _reduced(per_row, reduction, n)


@op(
    "multi_margin_loss",
    saves=("dscores", "scores", "targets", "p", "margin", "reduction"),
    differentiable=(True, False),
    owns=True,
    composed=_multi_margin_composed,
)
def multi_margin_loss(xp, scores, targets, *, p=1, margin=1.0, reduction="mean"):
    """Hinge loss: sum over i != y of max(0, margin - x[y] + x[i])^p, divided by C."""
    if scores.dtype == xp.float16:
        attrs = {"p": p, "margin": margin, "reduction": reduction}
        return _in_float32(xp, multi_margin_loss, (scores, targets), attrs)
    n, c = scores.shape
    rows = xp.arange(n)
    gaps = margin - scores[rows, targets][:, None] + scores
    gaps[rows, targets] = 0
    active = gaps > 0
    hinge = xp.where(active, gaps, 0)
    per_row = ((hinge if p == 1 else hinge * hinge).sum(axis=1) / c).astype(scores.dtype)
    dscores = (active if p == 1 else 2 * hinge) / c
    dscores[rows, targets] = -dscores.sum(axis=1)
    dscores = (dscores * _scale(reduction, n)).astype(scores.dtype)
    return _reduce(xp, per_row, reduction, n), {"dscores": dscores}


@multi_margin_loss.backward
def multi_margin_loss_backward(xp, dout, dscores, *_for_composed):
    return _times_rows(xp, dscores, dout), None


# ----------------------------------------------------------------------------- bias + activation


@op(
    "bias_act",
    saves=("out", "activation", "negative_slope", "needs_grad"),
    # dz is dout itself for the identity; db is always a new column sum
    owns=(False, True),
)
def bias_act(xp, z, b, *, activation="relu", negative_slope=0.01):
    """act(z + b) for z (..., C) and a bias b (C,): a Linear layer's epilogue in one pass.

    Saves only the output: every supported activation's derivative is a function of it
    (relu: out > 0, tanh: 1 - out^2, sigmoid: out (1 - out); see ``gpugrad.activations``).
    """
    activations.check(activation, negative_slope)
    return activations.forward(xp, z + b, activation, negative_slope)


@bias_act.backward
def bias_act_backward(xp, dout, out, activation, negative_slope, needs):
    slope = activations.derivative(xp, out, activation, negative_slope)
    dz = dout if slope is None else dout * slope
    # Sum over every axis but the last: also right for C == 0 or N == 0, where a reshape to
    # (-1, C) is ambiguous.
    db = dz.sum(axis=tuple(range(dz.ndim - 1))) if needs[1] else None
    return (dz if needs[0] else None), db
