"""What the fused losses share: the reduction, its gradient factor, float16 in float32."""

from __future__ import annotations


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
    attrs = {k: _up(xp, v) for k, v in attrs.items()}
    out, extras = op.fwd(xp, *up, **attrs)

    def down(v):
        return v.astype(xp.float16) if getattr(v, "dtype", None) == xp.float32 else v

    return down(out), {k: down(v) for k, v in extras.items()}


def _up(xp, v):
    """A float16 array attribute (class weights) in float32; anything else as it is."""
    return v.astype(xp.float32) if getattr(v, "dtype", None) == xp.float16 else v


def _times_rows(xp, d, dout):
    """Scale a saved (N, C) gradient by dout: a scalar, or one value per row for "none"."""
    return d * (dout[:, None] if dout.ndim else dout)


def _reduced(per_item, reduction, count):
    """The reduction of a composed form's per-item losses (recorded tensors)."""
    if reduction == "none":
        return per_item
    total = per_item.sum()
    return total if reduction == "sum" else total / count  # 0 / 0 is NaN, as in the forward
