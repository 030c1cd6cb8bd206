"""Neural-network building blocks: Module, Parameter, layers, containers and initialisers.

>>> import gpugrad as gg
>>> from gpugrad import nn
>>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
>>> model(gg.ones((5, 3))).shape
(5, 2)
"""

from . import init, utils
from .embedding import Embedding
from .layers import (
    GELU,
    MLP,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    linear_act,
)
from .loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    MultiMarginLoss,
    NLLLoss,
    SmoothL1Loss,
)
from .module import LoadResult, Module, Parameter
from .normalization import BatchNorm1d, LayerNorm

__all__ = [
    "GELU",
    "MLP",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LoadResult",
    "LogSoftmax",
    "MSELoss",
    "Module",
    "MultiMarginLoss",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "SmoothL1Loss",
    "Softmax",
    "Tanh",
    "init",
    "linear_act",
    "utils",
]
