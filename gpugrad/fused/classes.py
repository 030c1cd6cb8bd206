"""Losses over class scores: (N, C) scores and (N,) integer targets.

cross_entropy (softmax + negative log-likelihood, with class weights, label smoothing and
ignore_index), nll_loss (on log-probabilities) and multi_margin_loss (the multi-class hinge).
With class weights ``w``, a row's loss is scaled by ``w[target]`` and "mean" divides by the sum
of the counted rows' target weights, not by their number: PyTorch's definition.
"""

from __future__ import annotations

from ..dispatch import op
from ._common import _in_float32, _reduce, _reduced, _scale, _times_rows


def _target_weights(xp, valid, safe, weight, dtype):
    """Each row's weight: weight[target] (1 without class weights), 0 where ignored."""
    if weight is None:
        return valid.astype(dtype)
    return xp.where(valid, weight[safe], 0).astype(dtype)


def _denominator(valid, wt, weight):
    """What "mean" divides by: the number of counted rows, or the sum of their weights."""
    return int(valid.sum()) if weight is None else float(wt.sum())


def _composed_weights(xp, valid, safe, weight, dtype):
    if weight is None:
        return valid.astype(dtype)
    return xp.where(valid, xp.asarray(weight)[safe], 0.0)


def _cross_entropy_composed(
    xp, logits, targets, *, reduction="mean", ignore_index=-100, weight=None, label_smoothing=0.0
):
    n, c = logits.shape
    valid = targets != ignore_index
    safe = xp.where(valid, targets, 0)
    shifted = logits - logits.max(axis=1, keepdims=True).detach()
    logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    wt = _composed_weights(xp, valid, safe, weight, logits.dtype)
    per_row = -(wt * logp[xp.arange(n), safe])
    if label_smoothing:
        spread = logp if weight is None else logp * xp.asarray(weight)
        smooth = xp.where(valid, -spread.sum(axis=1), 0.0)
        per_row = (1 - label_smoothing) * per_row + (label_smoothing / c) * smooth
    count = valid.sum().item() if weight is None else wt.sum().item()
    return _reduced(per_row, reduction, count)


@op(
    "cross_entropy",
    saves=(
        "dlogits",
        "logits",
        "targets",
        "reduction",
        "ignore_index",
        "weight",
        "label_smoothing",
    ),
    differentiable=(True, False),
    owns=True,
    composed=_cross_entropy_composed,
)
def cross_entropy(
    xp, logits, targets, *, reduction="mean", ignore_index=-100, weight=None, label_smoothing=0.0
):
    """Softmax cross-entropy over classes (axis 1), log-sum-exp stable; saves its gradient.

    Row n's loss is (1 - e) w[t] (lse - x[t]) + (e / C) sum_c w[c] (lse - x[c]) with e the
    label smoothing and w the class weights (all 1 without them); its gradient is
    (1 - e) w[t] (p - onehot(t)) + (e / C) (W p - w) with p = softmax(x) and W = sum_c w[c].
    """
    if logits.dtype == xp.float16:
        attrs = {
            "reduction": reduction,
            "ignore_index": ignore_index,
            "weight": weight,
            "label_smoothing": label_smoothing,
        }
        return _in_float32(xp, cross_entropy, (logits, targets), attrs)
    n, c = logits.shape
    dtype = logits.dtype
    shifted = logits - logits.max(axis=1, keepdims=True)
    exps = xp.exp(shifted)
    sums = exps.sum(axis=1, keepdims=True)
    lse = xp.log(sums)
    valid = targets != ignore_index
    safe = xp.where(valid, targets, 0)
    rows = xp.arange(n)
    wt = _target_weights(xp, valid, safe, weight, dtype)
    per_row = xp.where(valid, wt * (lse[:, 0] - shifted[rows, safe]), 0)
    eps = float(label_smoothing)
    if eps:
        spread = (lse - shifted) if weight is None else (lse - shifted) * weight
        per_row = (1 - eps) * per_row + (eps / c) * xp.where(valid, spread.sum(axis=1), 0)
    count = _denominator(valid, wt, weight)
    scale = _scale(reduction, count)
    main = (1 - eps) * wt if eps else wt
    per_p = main  # each row's factor of p = softmax(x) in the gradient
    if eps:
        v = valid.astype(dtype)
        per_p = main + (eps / c) * (c * v if weight is None else weight.sum() * v)
    dlogits = exps * (per_p / sums[:, 0])[:, None]
    dlogits[rows, safe] -= main
    if eps:
        dlogits -= (eps / c) * (v[:, None] if weight is None else v[:, None] * weight)
    dlogits = (dlogits * scale).astype(dtype)
    return _reduce(xp, per_row.astype(dtype), reduction, count), {"dlogits": dlogits}


@cross_entropy.backward
def cross_entropy_backward(xp, dout, dlogits, *_for_composed):
    return _times_rows(xp, dlogits, dout), None


def _nll_composed(xp, input, targets, *, reduction="mean", ignore_index=-100, weight=None):
    valid = targets != ignore_index
    safe = xp.where(valid, targets, 0)
    wt = _composed_weights(xp, valid, safe, weight, input.dtype)
    per_row = -(wt * input[xp.arange(input.shape[0]), safe])
    count = valid.sum().item() if weight is None else wt.sum().item()
    return _reduced(per_row, reduction, count)


@op(
    "nll_loss",
    saves=(
        "coef",
        "safe",
        "input_shape",
        "input",
        "targets",
        "reduction",
        "ignore_index",
        "weight",
    ),  # fmt: skip
    differentiable=(True, False),
    owns=True,
    composed=_nll_composed,
)
def nll_loss(xp, input, targets, *, reduction="mean", ignore_index=-100, weight=None):
    """-w[t] input[n, t] per row, for log-probabilities (N, C); saves -w[t] / denominator,
    the one nonzero of each row's gradient."""
    if input.dtype == xp.float16:
        attrs = {"reduction": reduction, "ignore_index": ignore_index, "weight": weight}
        return _in_float32(xp, nll_loss, (input, targets), attrs)
    valid = targets != ignore_index
    safe = xp.where(valid, targets, 0)
    rows = xp.arange(input.shape[0])
    wt = _target_weights(xp, valid, safe, weight, input.dtype)
    per_row = xp.where(valid, -wt * input[rows, safe], 0).astype(input.dtype)
    count = _denominator(valid, wt, weight)
    coef = (-wt * _scale(reduction, count)).astype(input.dtype)
    return _reduce(xp, per_row, reduction, count), {"coef": coef, "safe": safe}


@nll_loss.backward
def nll_loss_backward(xp, dout, coef, safe, shape, *_for_composed):
    dx = xp.zeros(shape, coef.dtype)
    dx[xp.arange(shape[0]), safe] = coef * dout  # one element per row: no repeats to add
    return dx, None


def _multi_margin_composed(xp, scores, targets, *, p=1, margin=1.0, reduction="mean", weight=None):
    n, c = scores.shape
    picked = scores[xp.arange(n), targets]
    gaps = margin - picked.reshape(n, 1) + scores
    others = xp.where(targets.reshape(n, 1) == xp.arange(c), 0.0, 1.0).astype(scores.dtype)
    hinge = gaps.relu() * others  # the target's own column never counts
    per_row = (hinge if p == 1 else hinge * hinge).sum(axis=1) / c
    if weight is not None:
        per_row = per_row * xp.asarray(weight)[targets]
    return _reduced(per_row, reduction, n)


@op(
    "multi_margin_loss",
    saves=("dscores", "scores", "targets", "p", "margin", "reduction", "weight"),
    differentiable=(True, False),
    owns=True,
    composed=_multi_margin_composed,
)
def multi_margin_loss(xp, scores, targets, *, p=1, margin=1.0, reduction="mean", weight=None):
    """Hinge loss: sum over i != y of max(0, margin - x[y] + x[i])^p, divided by C, times
    weight[y] with class weights; "mean" divides by N (PyTorch's definition)."""
    if scores.dtype == xp.float16:
        attrs = {"p": p, "margin": margin, "reduction": reduction, "weight": weight}
        return _in_float32(xp, multi_margin_loss, (scores, targets), attrs)
    n, c = scores.shape
    rows = xp.arange(n)
    gaps = margin - scores[rows, targets][:, None] + scores
    gaps[rows, targets] = 0
    active = gaps > 0
    hinge = xp.where(active, gaps, 0)
    per_row = (hinge if p == 1 else hinge * hinge).sum(axis=1) / c
    dscores = (active if p == 1 else 2 * hinge) / c
    dscores[rows, targets] = -dscores.sum(axis=1)
    if weight is not None:
        wt = weight[targets]
        per_row = per_row * wt
        dscores = dscores * wt[:, None]
    dscores = (dscores * _scale(reduction, n)).astype(scores.dtype)
    return _reduce(xp, per_row.astype(scores.dtype), reduction, n), {"dscores": dscores}


@multi_margin_loss.backward
def multi_margin_loss_backward(xp, dout, dscores, *_for_composed):
    return _times_rows(xp, dscores, dout), None
