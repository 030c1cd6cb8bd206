"""Neural-network building blocks: Module, Parameter, layers, containers and initialisers.

>>> import gpugrad as gg
>>> from gpugrad import nn
>>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
>>> model(gg.ones((5, 3))).shape
(5, 2)
"""

from . import init, utils
from .layers import (
    MLP,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    linear_act,
)
from .module import LoadResult, Module, Parameter

__all__ = [
    "MLP",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LoadResult",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "init",
    "linear_act",
    "utils",
]
