"""Fused ops: a whole loss, a normalization or a layer's epilogue as one op of the table.

A fused op computes in one forward what a composition of ops would compute in several, and
saves what its backward needs already reduced (a loss's gradient scaled by the reduction,
LayerNorm's per-row mean and 1/std), so backward is one short pass. The NumPy/CuPy forwards
and backwards here are the references that the Numba (``backends/cpu.py``) and CUDA
(``backends/cuda/``) fast paths registered on them are tested against.

A backward that reads arrays precomputed by its forward cannot be differentiated through them,
so such an op also declares a composed form: the same function written with other ops, against
a namespace of recorded ops (``gpugrad.graph``), which gradients of gradients differentiate
instead; those ops save their inputs and attributes too (references to arrays alive anyway).

- ``classes``: cross_entropy (class weights, label smoothing, ignore_index), nll_loss,
  multi_margin_loss; ``pointwise``: BCE with and without logits, MSE, L1, Huber;
- ``normalization``: layer_norm, batch_norm;
- ``epilogue``: bias_act, a linear layer's bias add and activation.

Input validation (target ranges, shapes, dtypes) happens in ``functional.py`` before these run.
"""

from ._common import _scale
from .classes import cross_entropy, multi_margin_loss, nll_loss
from .epilogue import bias_act
from .normalization import batch_norm, layer_norm
from .pointwise import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    huber_loss,
    l1_loss,
    mse_loss,
)

__all__ = [
    "_scale",
    "batch_norm",
    "bias_act",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "huber_loss",
    "l1_loss",
    "layer_norm",
    "mse_loss",
    "multi_margin_loss",
    "nll_loss",
]
