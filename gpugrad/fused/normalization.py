"""layer_norm and batch_norm: normalize, scale and shift, with the statistics saved.

Both compute out = (x - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps), with the
biased variance; layer_norm takes the statistics over the last ``normalized_ndim`` axes of each
sample, batch_norm per channel (axis 1) over the batch and every axis after the channels. The
forward saves mean and rstd (one per row or channel), so backward needs no second reduction
over x for them; the composed forms (for gradients of gradients) recompute them with ops.
"""

from __future__ import annotations

from ..dispatch import op


def _last_axes(x, k):
    return tuple(range(x.ndim - k, x.ndim))


def _channel_axes(x):
    """The axes batch_norm reduces over: the batch and everything after the channels."""
    return (0, *range(2, x.ndim))


def _per_channel(v, ndim):
    """A (C,) vector shaped to broadcast against (N, C, ...)."""
    return v.reshape((-1,) + (1,) * (ndim - 2))


def _normalize(xp, x, axes, eps):
    """(x - mean) * rstd over ``axes``, with mean and rstd kept (keepdims) for backward."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    rstd = 1 / xp.sqrt(var + eps)
    return xc * rstd, mean, var, rstd


def _normalize_backward(xhat, rstd, g, axes):
    """d/dx of xhat = (x - mean) * rstd, given g = dL/dxhat: the mean and the variance both
    depend on every x of the group, which the two subtracted means account for."""
    mean_g = g.mean(axis=axes, keepdims=True)
    return rstd * (g - mean_g - xhat * (g * xhat).mean(axis=axes, keepdims=True))


def _float32_stats(xp, op, x, weight, bias, attrs):
    """float16 in, float16 out, statistics and arithmetic in float32 (as the losses do)."""
    up = [a.astype(xp.float32) for a in (x, weight, bias)]
    out, extras = op.fwd(xp, *up, **attrs)
    return out.astype(xp.float16), extras


def _up(xp, *arrays):
    return [a.astype(xp.float32) if a.dtype == xp.float16 else a for a in arrays]


# ----------------------------------------------------------------------------- layer_norm


def _layer_norm_composed(xp, x, weight, bias, *, normalized_ndim=1, eps=1e-5):
    axes = _last_axes(x, normalized_ndim)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    return xc / xp.sqrt(var + eps) * weight + bias


@op(
    "layer_norm",
    saves=("mean", "rstd", "x", "weight", "bias", "normalized_ndim", "eps", "needs_grad"),
    owns=True,
    composed=_layer_norm_composed,
)
def layer_norm(xp, x, weight, bias, *, normalized_ndim=1, eps=1e-5):
    """Normalize each sample over its last ``normalized_ndim`` axes, then x * weight + bias,
    weight and bias having the shape of those axes (PyTorch's LayerNorm)."""
    if x.dtype == xp.float16:
        attrs = {"normalized_ndim": normalized_ndim, "eps": eps}
        return _float32_stats(xp, layer_norm, x, weight, bias, attrs)
    xhat, mean, _, rstd = _normalize(xp, x, _last_axes(x, normalized_ndim), eps)
    return xhat * weight + bias, {"mean": mean, "rstd": rstd}


@layer_norm.backward
def layer_norm_backward(xp, dout, mean, rstd, x, weight, bias, normalized_ndim, eps, needs):
    x, dout, weight = _up(xp, x, dout, weight)
    axes = _last_axes(x, normalized_ndim)
    lead = tuple(range(x.ndim - normalized_ndim))
    xhat = (x - mean) * rstd
    dx = _normalize_backward(xhat, rstd, dout * weight, axes) if needs[0] else None
    dw = (dout * xhat).sum(axis=lead) if needs[1] else None
    db = dout.sum(axis=lead) if needs[2] else None
    return dx, dw, db


# ----------------------------------------------------------------------------- batch_norm


def _batch_norm_composed(xp, x, weight, bias, *, eps=1e-5, running=None):
    axes = _channel_axes(x)
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)
    return xc / xp.sqrt(var + eps) * _per_channel(weight, x.ndim) + _per_channel(bias, x.ndim)


@op(
    "batch_norm",
    saves=("mean", "rstd", "x", "weight", "bias", "eps", "needs_grad"),
    owns=True,
    composed=_batch_norm_composed,
)
def batch_norm(xp, x, weight, bias, *, eps=1e-5, running=None):
    """Normalize x (N, C) or (N, C, L) per channel with the batch's statistics (training
    mode), then scale and shift by weight and bias (C,).

    ``running=(running_mean, running_var, factor)`` also blends the batch statistics into
    those arrays in place, as PyTorch's batch_norm does: r = (1 - factor) r + factor s, with the
    unbiased variance (N / (N - 1) times the biased one that normalizes). That side effect is
    the only one in the op table; no gradient flows through it.
    """
    if x.dtype == xp.float16:
        return _float32_stats(xp, batch_norm, x, weight, bias, {"eps": eps, "running": running})
    xhat, mean, var, rstd = _normalize(xp, x, _channel_axes(x), eps)
    out = xhat * _per_channel(weight, x.ndim) + _per_channel(bias, x.ndim)
    if running is not None:
        running_mean, running_var, factor = running
        n = x.size // max(x.shape[1], 1)
        _blend(running_mean, mean.reshape(-1), factor)
        _blend(running_var, var.reshape(-1) * (n / (n - 1)), factor)
    return out, {"mean": mean, "rstd": rstd}


def _blend(buffer, value, factor):
    buffer *= 1 - factor
    buffer += (factor * value).astype(buffer.dtype)


@batch_norm.backward
def batch_norm_backward(xp, dout, mean, rstd, x, weight, bias, eps, needs):
    x, dout, weight = _up(xp, x, dout, weight)
    axes = _channel_axes(x)
    xhat = (x - mean) * rstd
    g = dout * _per_channel(weight, x.ndim)
    dx = _normalize_backward(xhat, rstd, g, axes) if needs[0] else None
    dw = (dout * xhat).sum(axis=axes) if needs[1] else None
    db = dout.sum(axis=axes) if needs[2] else None
    return dx, dw, db
