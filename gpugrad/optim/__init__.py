"""Optimizers (SGD, Adam, AdamW, RMSprop, Adagrad) with fused whole-step updates, and lr
schedulers.

>>> import gpugrad as gg
>>> from gpugrad import nn, optim
>>> model = nn.Linear(3, 1)
>>> opt = optim.Adam(model.parameters(), lr=1e-3)
>>> model(gg.ones((4, 3))).sum().backward()
>>> opt.step(); opt.zero_grad()
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
)
from .optimizer import Optimizer
from .rmsprop import Adagrad, RMSprop
from .sgd import SGD

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "OneCycleLR",
    "Optimizer",
    "RMSprop",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "lr_scheduler",
]
