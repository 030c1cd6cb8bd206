"""Learning-rate schedules with PyTorch's semantics (``torch.optim.lr_scheduler``): StepLR,
CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR, OneCycleLR and ReduceLROnPlateau.

A scheduler rewrites ``group["lr"]`` of its optimizer's groups each time ``step()`` is called
(after ``optimizer.step()``: once per epoch, or once per batch for OneCycleLR). Like PyTorch's,
most updates are chained from the current lr, so a schedule and a manual lr change compose;
``state_dict()`` holds everything but the optimizer (save the optimizer's state next to it).
Constructing a scheduler takes its first step, which sets the lr of epoch 0.

>>> import gpugrad as gg
>>> from gpugrad import optim
>>> opt = optim.SGD([gg.zeros(1, requires_grad=True)], lr=1.0)
>>> warmup = optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
>>> [opt.step() or warmup.step() or round(warmup.get_last_lr()[0], 3) for _ in range(4)]
[0.5, 0.75, 1.0, 1.0]
"""

from .base import LRScheduler
from .epochs import CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR, StepLR
from .onecycle import OneCycleLR
from .plateau import ReduceLROnPlateau

__all__ = [
    "CosineAnnealingLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]
