"""Loss modules: PyTorch's classes over the functions of ``gpugrad.functional``.

Each holds its options (``reduction``, class ``weight``, ...) and calls its function in
``forward(input, target)``. Class weights and ``pos_weight`` are buffers, as in PyTorch: they
follow ``.to()`` and appear in ``state_dict()`` under ``weight`` / ``pos_weight``.

>>> import gpugrad as gg
>>> loss = CrossEntropyLoss(label_smoothing=0.1)
>>> round(loss(gg.tensor([[2.0, 0.0, -1.0]]), gg.tensor([0])).item(), 4)
0.3365
"""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor, tensor
from .module import Module


def _buffer(value):
    return None if value is None else value if isinstance(value, Tensor) else tensor(value)


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(
                f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got "
                f"{reduction!r}"
            )
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", _buffer(weight))


class CrossEntropyLoss(_WeightedLoss):
    """``F.cross_entropy``: softmax cross-entropy of logits (N, C) and integer targets (N,),
    with class ``weight``, ``ignore_index`` and ``label_smoothing``."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):  # fmt: skip
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            self.reduction,
            self.ignore_index,
            weight=self.weight,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_WeightedLoss):
    """``F.nll_loss``: negative log-likelihood of log-probabilities (N, C)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MultiMarginLoss(_WeightedLoss):
    """``F.multi_margin_loss``: the multi-class hinge loss, p = 1 or 2."""

    def __init__(self, p: int = 1, margin: float = 1.0, weight=None, reduction: str = "mean"):
        super().__init__(weight, reduction)
        if p not in (1, 2):
            raise ValueError(f"MultiMarginLoss: p must be 1 or 2, got {p}")
        self.p = p
        self.margin = margin

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.multi_margin_loss(input, target, self.p, self.margin, self.reduction,
                                   weight=self.weight)  # fmt: skip


class BCEWithLogitsLoss(_Loss):
    """``F.binary_cross_entropy_with_logits``, with per-element ``weight`` and ``pos_weight``
    (one per class, broadcast over the last axis)."""

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", _buffer(weight))
        self.register_buffer("pos_weight", _buffer(pos_weight))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            input, target, self.reduction, weight=self.weight, pos_weight=self.pos_weight
        )


class BCELoss(_Loss):
    """``F.binary_cross_entropy`` on probabilities in [0, 1]."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy(input, target, self.reduction)


class MSELoss(_Loss):
    """``F.mse_loss``: the mean (or sum) of squared errors."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """``F.l1_loss``: the mean (or sum) of absolute errors."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    """``F.huber_loss``: squared error below ``delta``, linear above."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.huber_loss(input, target, self.reduction, self.delta)


class SmoothL1Loss(_Loss):
    """``F.smooth_l1_loss``: Huber divided by ``beta`` (L1 for beta = 0)."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)
