"""Activations, softmax, linear, dropout, normalization, embedding and losses with PyTorch's
names and semantics.

``import gpugrad.functional as F``. Functions validate their inputs here (shapes, dtypes,
devices, target ranges) so that the ops they apply only ever see clean data. The losses live in
``losses.py`` and are re-exported here.
"""

from __future__ import annotations

import numpy as np

from . import fused, ops, state
from .aliases import axis_keywords
from .cuda_graph import is_capturing
from .device import move
from .dispatch import apply
from .engine import no_grad
from .losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    multi_margin_loss,
    nll_loss,
    smooth_l1_loss,
)
from .tensor import Tensor, tensor

__all__ = [
    "batch_norm",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "huber_loss",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "multi_margin_loss",
    "nll_loss",
    "one_hot",
    "relu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "softmax",
    "tanh",
]


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


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x), Phi the standard normal CDF; ``approximate="tanh"`` uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (both as in PyTorch)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(ops.gelu, (_t(x),), {"approximate": approximate})


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (SiLU, also called swish)."""
    return apply(ops.silu, (_t(x),), {})


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


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) when
    ``training``; the identity otherwise. Masks come from gpugrad's generator
    (``gg.manual_seed``), drawn on the host."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = _t(x)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = state.random.generator.random(x.shape) >= p
    mask = (keep / (1.0 - p)).astype(x.dtype)
    return x * Tensor._wrap(move(mask, x.device), x.device)


def _affine(name, what, value, like, shape, fill):
    """weight or bias as a tensor of ``shape`` on ``like``'s device: the given one (checked),
    or a constant ``fill`` (no gradient) when None."""
    if value is None:
        return Tensor._wrap(move(np.full(shape, fill, like.dtype), like.device), like.device)
    value = _t(value)
    if value.shape != shape:
        raise ValueError(f"{name}: {what} must have shape {shape}, got {value.shape}")
    if value.device != like.device:
        raise RuntimeError(
            f"{name}: {what} is on {value.device} but the input is on {like.device}; move it "
            f"with .to({like.device!r})"
        )
    return value


def layer_norm(
    input: Tensor,
    normalized_shape,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize over the last ``len(normalized_shape)`` axes (biased variance), then scale by
    ``weight`` and shift by ``bias`` (both of ``normalized_shape``, optional); one fused op."""
    x = _t(input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or x.shape[x.ndim - k :] != shape or x.ndim < k:
        raise ValueError(
            f"layer_norm: normalized_shape {shape} must be the trailing dims of the input, "
            f"got an input of shape {x.shape}"
        )
    if x.dtype.kind != "f":
        raise TypeError(f"layer_norm: input must be floating point, got {x.dtype}")
    w = _affine("layer_norm", "weight", weight, x, shape, 1.0)
    b = _affine("layer_norm", "bias", bias, x, shape, 0.0)
    return apply(fused.layer_norm, (x, w, b), {"normalized_ndim": k, "eps": float(eps)})


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization of (N, C) or (N, C, L) per channel, PyTorch's ``F.batch_norm``.

    Training (or no running statistics): normalize with the batch's mean and biased variance,
    and blend them into ``running_mean``/``running_var`` in place when given:
    r = (1 - momentum) r + momentum s, with the unbiased variance. Otherwise normalize with the
    running statistics: (x - running_mean) / sqrt(running_var + eps) * weight + bias.
    """
    x = _t(input)
    if x.ndim not in (2, 3):
        raise ValueError(f"batch_norm: expected an input of shape (N, C) or (N, C, L), got "
                         f"{x.shape}")  # fmt: skip
    if x.dtype.kind != "f":
        raise TypeError(f"batch_norm: input must be floating point, got {x.dtype}")
    c = x.shape[1]
    w = _affine("batch_norm", "weight", weight, x, (c,), 1.0)
    b = _affine("batch_norm", "bias", bias, x, (c,), 0.0)
    stats = [None if r is None else _t(r) for r in (running_mean, running_var)]
    for what, r in zip(("running_mean", "running_var"), stats, strict=True):
        if r is not None and (r.shape != (c,) or r.device != x.device):
            raise ValueError(
                f"batch_norm: {what} must have shape ({c},) on {x.device}, got {r.shape} on "
                f"{r.device}"
            )
    if training or stats[0] is None or stats[1] is None:
        n = x.size // max(c, 1)
        if n <= 1:
            raise ValueError(
                f"batch_norm: training needs more than 1 value per channel to estimate a "
                f"variance, got an input of shape {x.shape}; use a larger batch or eval mode"
            )
        attrs = {"eps": float(eps)}
        if training and stats[0] is not None and stats[1] is not None:
            for r in stats:
                r._version[0] += 1  # updated in place below: a saved copy must not be used
            attrs["running"] = (stats[0].data, stats[1].data, float(momentum))
        return apply(fused.batch_norm, (x, w, b), attrs)
    channel = (c,) + (1,) * (x.ndim - 2)
    with no_grad():  # the running statistics are constants here
        mean = stats[0].to(x.dtype).reshape(channel)
        std = (stats[1].to(x.dtype) + eps).sqrt().reshape(channel)
    return (x - mean) * (w.reshape(channel) / std) + b.reshape(channel)


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer tensor ``input``:
    shape (*input.shape, dim). Repeated indices add their gradients; row ``padding_idx``
    (negative counts from the end) gets none, as in PyTorch."""
    idx, weight = _t(input), _t(weight)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be (num_embeddings, dim), got {weight.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(
            f"embedding: indices must be integers, got dtype {idx.dtype}; use "
            "gg.tensor(ids, dtype=gg.int64)"
        )
    if idx.device != weight.device:
        raise RuntimeError(
            f"embedding: indices on {idx.device} and weight on {weight.device}; move them to "
            "one device"
        )
    v = weight.shape[0]
    if padding_idx is not None:
        if not -v <= padding_idx < v:
            raise ValueError(f"embedding: padding_idx {padding_idx} is out of range for {v} rows")
        padding_idx = padding_idx % v
    data = idx.data
    if data.size and not is_capturing():
        lo, hi = int(data.min()), int(data.max())
        if lo < 0 or hi >= v:
            raise IndexError(
                f"embedding: index {lo if lo < 0 else hi} is out of range for a table of {v} "
                f"rows (valid: 0..{v - 1})"
            )
    return apply(ops.embedding, (weight,), {"indices": data, "padding_idx": padding_idx})


def one_hot(target: Tensor, num_classes: int) -> Tensor:
    """(N,) integer labels -> (N, num_classes) float32 one-hot rows."""
    t = _t(target)
    xp = t._xp
    out = xp.zeros((*t.shape, num_classes), dtype=np.float32)
    xp.put_along_axis(out, t.data[..., None].astype(np.int64), 1, axis=-1)
    return Tensor._wrap(out, t.device)
