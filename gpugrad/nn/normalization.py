"""Normalization layers: LayerNorm and BatchNorm1d, with PyTorch's arguments and state."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..tensor import Tensor, _is_float
from .module import Module, Parameter


def _float_dtype(name, dtype):
    dtype = np.dtype("float32" if dtype is None else dtype)
    if not _is_float(dtype):
        raise TypeError(f"{name}: dtype must be floating point, got {dtype}")
    return dtype


class LayerNorm(Module):
    """Normalize each sample over its last ``len(normalized_shape)`` dims, then scale and
    shift elementwise: (x - mean) / sqrt(var + eps) * weight + bias (biased variance).

    ``elementwise_affine=False`` has no weight or bias; ``bias=False`` keeps only the weight.
    Forward and backward are one fused op (one Numba pass per row on the CPU, a warp or block
    per row on the GPU).

    >>> import gpugrad as gg
    >>> x = gg.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=gg.float64)
    >>> LayerNorm(4, dtype=gg.float64)(x).numpy().round(3).tolist()
    [[-1.342, -0.447, 0.447, 1.342]]
    """

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype=None,
        device: str = "cpu",
    ):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dtype = _float_dtype("LayerNorm", dtype)
        self.weight = self.bias = None
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype), device=device)
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype), device=device)

    def reset_parameters(self) -> None:
        """weight back to ones, bias to zeros."""
        for p, value in ((self.weight, 1.0), (self.bias, 0.0)):
            if p is not None:
                p.data[...] = value
                p._version[0] += 1

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )


class BatchNorm1d(Module):
    """Batch normalization of (N, C) or (N, C, L) inputs per channel, PyTorch's BatchNorm1d.

    Training: normalize with the batch's mean and biased variance, and blend them into the
    buffers ``running_mean`` and ``running_var`` (the unbiased variance):
    r = (1 - momentum) r + momentum s; ``momentum=None`` takes the cumulative average over
    ``num_batches_tracked`` batches. Eval: normalize with the running statistics. With
    ``track_running_stats=False`` there are no buffers and the batch statistics are used in
    both modes. The buffers are in ``state_dict()`` under PyTorch's names.

    >>> import gpugrad as gg
    >>> bn = BatchNorm1d(2, dtype=gg.float64)
    >>> y = bn(gg.tensor([[1.0, 0.0], [3.0, 4.0]], dtype=gg.float64))
    >>> [t.numpy().round(3).tolist() for t in (y, bn.running_mean, bn.running_var)]
    [[[-1.0, -1.0], [1.0, 1.0]], [0.2, 0.2], [1.1, 1.7]]
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=None,
        device: str = "cpu",
    ):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dtype = _float_dtype("BatchNorm1d", dtype)
        self.weight = self.bias = None
        if affine:
            self.weight = Parameter(np.ones(num_features, dtype), device=device)
            self.bias = Parameter(np.zeros(num_features, dtype), device=device)
        if track_running_stats:
            self.register_buffer(
                "running_mean", Tensor(np.zeros(num_features, dtype), device=device)
            )
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype), device=device))
            counter = Tensor(np.array(0, np.int64), device=device)
            self.register_buffer("num_batches_tracked", counter)
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self) -> None:
        """running_mean to zeros, running_var to ones, num_batches_tracked to 0."""
        if self.track_running_stats:
            for t, value in ((self.running_mean, 0), (self.running_var, 1),
                             (self.num_batches_tracked, 0)):  # fmt: skip
                t.data[...] = value
                t._version[0] += 1

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(
                f"BatchNorm1d({self.num_features}): expected an input of shape (N, "
                f"{self.num_features}) or (N, {self.num_features}, L), got {x.shape}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1  # a buffer, not in any graph
            if self.momentum is None:  # the cumulative average: weight 1/n for batch n
                factor = 1.0 / float(self.num_batches_tracked.item())
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            training=self.training or self.running_mean is None,
            momentum=factor,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )
