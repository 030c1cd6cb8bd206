"""Layers: Linear, activations, softmax, Dropout, Flatten, and the containers Sequential and
MLP (normalization: ``normalization.py``; Embedding: ``embedding.py``; losses: ``loss.py``).

Inside a Sequential (and so an MLP), a Linear with a bias followed directly by an activation
runs as ``x @ W.T`` plus one fused ``bias_act`` op (``fused/``): the bias add, the activation
and, in backward, the bias gradient's column sum each take a single pass instead of two or three.
The result is the same as running the two layers one after the other.
"""

from __future__ import annotations

import math

import numpy as np

from .. import activations, fused
from .. import functional as F
from ..functional import linear
from ..tensor import Tensor, _is_float
from . import init
from .module import Module, Parameter, _Recorder
from .normalization import BatchNorm1d, LayerNorm


def linear_act(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    activation: str = "relu",
    negative_slope: float = 0.01,
) -> Tensor:
    """act(x @ weight.T + bias) with the bias add and activation fused into one op.

    weight is (out_features, in_features) and bias (out_features,); activation is one of
    ``gpugrad.activations.NAMES``: "relu", "leaky_relu", "tanh", "sigmoid", "gelu" (exact),
    "gelu_tanh", "silu", "identity".

    >>> import gpugrad as gg
    >>> linear_act(gg.ones((2, 3)), gg.ones((4, 3)), gg.full(4, -5.0)).tolist()[0]
    [0.0, 0.0, 0.0, 0.0]
    """
    if bias is None:
        return _activate(linear(x, weight), activation, negative_slope)
    z = linear(x, weight)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear_act: bias {bias.shape} must be ({weight.shape[0]},)")
    return fused.bias_act(z, bias, activation=activation, negative_slope=negative_slope)


def _activate(x: Tensor, activation: str, negative_slope: float) -> Tensor:
    if activation == "relu":
        return x.relu()
    if activation == "leaky_relu":
        return x.leaky_relu(negative_slope)
    if activation == "tanh":
        return x.tanh()
    if activation == "sigmoid":
        return x.sigmoid()
    if activation == "gelu":
        return F.gelu(x)
    if activation == "gelu_tanh":
        return F.gelu(x, approximate="tanh")
    if activation == "silu":
        return F.silu(x)
    if activation == "identity":
        return x
    raise ValueError(f"unknown activation {activation!r}; expected one of {activations.NAMES}")


# ----------------------------------------------------------------------------- layers


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features), PyTorch's initialisation.

    Both weight and bias start uniform in [-1/sqrt(in_features), 1/sqrt(in_features)]
    (kaiming_uniform with a = sqrt(5)), drawn from gpugrad's generator (``gg.manual_seed``).

    >>> Linear(3, 4).num_parameters()
    16
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype=None,
        device: str = "cpu",
    ):
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError(f"Linear: sizes must be >= 0, got ({in_features}, {out_features})")
        self.in_features = in_features
        self.out_features = out_features
        dtype = np.dtype("float32" if dtype is None else dtype)
        if not _is_float(dtype):
            raise TypeError(f"Linear: dtype must be floating point, got {dtype}")
        self.weight = Parameter(np.empty((out_features, in_features), dtype), device=device)
        self.bias = Parameter(np.empty(out_features, dtype), device=device) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Redraw weight and bias from U(-1/sqrt(in_features), 1/sqrt(in_features))."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class _Activation(Module):
    """An activation layer; ``kind`` names it for the fused Linear + activation path."""

    kind = "identity"
    negative_slope = 0.0

    def fusable(self) -> bool:
        return True

    def forward(self, x: Tensor) -> Tensor:
        return _activate(x, self.kind, self.negative_slope)


class ReLU(_Activation):
    """max(x, 0) elementwise."""

    kind = "relu"


class LeakyReLU(_Activation):
    """x if x > 0 else negative_slope * x."""

    kind = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def fusable(self) -> bool:
        return self.negative_slope >= 0  # bias_act reads the derivative from the output's sign

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(_Activation):
    kind = "tanh"


class Sigmoid(_Activation):
    kind = "sigmoid"


class Identity(_Activation):
    """Returns its input unchanged (a placeholder layer)."""

    kind = "identity"


class GELU(_Activation):
    """x * Phi(x) (exact), or its tanh approximation with ``approximate="tanh"``."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.kind = "gelu" if approximate == "none" else "gelu_tanh"

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_Activation):
    """x * sigmoid(x)."""

    kind = "silu"


class Softmax(Module):
    """softmax along ``dim`` (the last axis when None; PyTorch's None picks an axis by the
    input's rank and warns, so pass ``dim`` explicitly when carrying code over)."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, axis=-1 if self.dim is None else self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """log_softmax along ``dim`` (the last axis when None)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, axis=-1 if self.dim is None else self.dim)


class Dropout(Module):
    """Zero each element with probability p during training and scale the rest by 1/(1-p).

    In eval mode it is the identity. Masks come from gpugrad's generator (``gg.manual_seed``).
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """Flatten dims start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 0:
            return x.reshape(1)
        start = self.start_dim % x.ndim
        end = self.end_dim % x.ndim
        if start > end:
            raise ValueError(
                f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} "
                f"for an input of shape {x.shape}"
            )
        shape = x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :]
        return x.reshape(shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


# ----------------------------------------------------------------------------- containers


class Sequential(Module):
    """Run layers in order; a Linear followed by an activation runs fused (see module doc).

    >>> import gpugrad as gg
    >>> net = Sequential(Linear(3, 4), ReLU(), Linear(4, 2))
    >>> net(gg.ones((5, 3))).shape, len(net), [k for k, _ in net.named_parameters()][:2]
    ((5, 2), 3, ['0.weight', '0.bias'])
    """

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*layers[index])
        try:
            return layers[index]
        except IndexError:
            raise IndexError(
                f"Sequential: index {index} is out of range for {len(layers)} layers"
            ) from None

    def append(self, layer: Module) -> Sequential:
        self.add_module(str(len(self)), layer)
        return self

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self._modules.values())
        # summary() records every layer's output, which fusing two layers into one op would hide.
        fuse = _Recorder.rows is None
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if (
                fuse
                and type(layer) is Linear
                and layer.bias is not None
                and isinstance(nxt, _Activation)
                and nxt.fusable()
            ):
                x = linear_act(x, layer.weight, layer.bias, nxt.kind, nxt.negative_slope)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


_ACTIVATION_LAYERS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "gelu": GELU,
    "gelu_tanh": lambda: GELU(approximate="tanh"),
    "silu": SiLU,
    "identity": Identity,
}
_NORMS = {"layer": LayerNorm, "batch": BatchNorm1d}


class MLP(Sequential):
    """Linear layers of the given sizes with an activation between them (not after the last).

    ``MLP([64, 128, 10])`` is ``Sequential(Linear(64, 128), ReLU(), Linear(128, 10))``. With
    ``norm="layer"`` or ``"batch"`` a LayerNorm or BatchNorm1d follows each hidden Linear,
    before its activation; without one, each hidden Linear and its activation run fused.

    >>> MLP([64, 128, 10]).num_parameters()
    9610
    >>> [type(m).__name__ for m in MLP([4, 8, 2], activation="gelu", norm="layer")]
    ['Linear', 'LayerNorm', 'GELU', 'Linear']
    """

    def __init__(
        self,
        sizes,
        activation: str = "relu",
        bias: bool = True,
        dropout: float = 0.0,
        dtype=None,
        device: str = "cpu",
        norm: str | None = None,
    ):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP: need at least an input and an output size, got {sizes}")
        if activation not in _ACTIVATION_LAYERS:
            raise ValueError(
                f"MLP: unknown activation {activation!r}; expected one of "
                f"{tuple(_ACTIVATION_LAYERS)}"
            )
        if norm not in (None, *_NORMS):
            raise ValueError(f"MLP: norm must be 'layer', 'batch' or None, got {norm!r}")
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(Linear(a, b, bias=bias, dtype=dtype, device=device))
            if i < len(sizes) - 2:
                if norm is not None:
                    layers.append(_NORMS[norm](b, dtype=dtype, device=device))
                layers.append(_ACTIVATION_LAYERS[activation]())
                if dropout > 0:
                    layers.append(Dropout(dropout))
        super().__init__(*layers)
