"""The op-info table: how to call, sample and check every op of ``gg.OPS``.

Each entry says how to call the op on tensors (``fn``), how to compute it with plain NumPy
(``ref``), and how to draw inputs: shapes (broadcasting, size-1 and size-0 dims, 0-d) and a
value generator that keeps samples in the op's domain and away from its kinks, where finite
differences are meaningless. Optional fields add more checks:

- ``kink``: inputs sitting exactly on the op's kinks and the documented subgradient there
  (PyTorch's conventions: relu'(0) = 0, ties of max/min split evenly, clip passes at bounds);
- ``composed``: the same function built from unfused table entries, for fused ops;
- ``large``: bigger shapes checked with random-direction gradcheck instead of per element.

Every sample is also fed in the layouts of ``LAYOUTS`` (column-major, every other element of a
larger buffer), which must give the values and gradients of the contiguous input.
``test_ops.py`` runs the same checks over every entry, and fails if an op of the table has no
entry here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import fused


def normal(rng, shape):
    return rng.standard_normal(shape)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(rng, shape):
    """|x| in [0.2, 2]: abs/relu/leaky_relu kinks sit at 0."""
    return rng.uniform(0.2, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def distinct(rng, shape):
    """Values spaced at least 0.05 apart so max/min have no ties to perturb across."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.05 + rng.uniform(0, 0.01)).reshape(shape) - n * 0.025


def probabilities(rng, shape):
    return rng.uniform(0.05, 0.95, shape)


@dataclass
class OpInfo:
    name: str  # key in gg.OPS
    fn: object  # callable on tensors
    ref: object  # callable on numpy arrays
    shapes: list  # one tuple of input shapes per sample
    gens: tuple = (normal,)  # value generator per input (the last repeats)
    nondiff: tuple = ()  # indices of inputs that get no gradient (labels, conditions)
    int_inputs: dict = field(default_factory=dict)  # index -> fn(rng, shape, other_shapes)
    note: str = ""
    keeps_dtype: bool = True  # output dtype == input dtype
    finite_differences: bool = True  # False only where float32 rounding is the point (cast)
    kink: tuple | None = None  # (input arrays, expected grad of out.sum() per input or None)
    composed: object = None  # the op written with unfused entries (fused ops only)
    large: list = field(default_factory=list)  # shapes for random-direction gradcheck

    def make_inputs(self, rng, shapes, dtype):
        arrays = []
        for i, shape in enumerate(shapes):
            if i in self.int_inputs:
                arrays.append(self.int_inputs[i](rng, shape, shapes))
            else:
                gen = self.gens[min(i, len(self.gens) - 1)]
                arrays.append(np.asarray(gen(rng, shape), dtype=dtype))
        return arrays


def relayout(array, layout):
    """The same values in another memory layout: what x.T.copy().T or x[::2] hands an op."""
    if layout == "contiguous" or array.ndim == 0:
        return array
    if layout == "transposed":  # column-major: the layout of a transposed matrix's copy
        return np.asfortranarray(array)
    if layout == "strided":  # every other element of a buffer twice as long in each dim
        big = np.zeros(tuple(2 * n for n in array.shape), array.dtype)
        view = big[tuple(slice(None, None, 2) for _ in array.shape)]
        view[...] = array
        return view
    raise ValueError(layout)


LAYOUTS = ("transposed", "strided")


def _labels(rng, shape, shapes):
    return rng.integers(0, shapes[0][-1], shape).astype(np.int64)


def _mask(rng, shape, shapes):
    return rng.random(shape) > 0.5


def _np_erf(x):
    return np.asarray(np.frompyfunc(math.erf, 1, 1)(x), dtype=x.dtype)


def _np_gelu(x):
    return x * 0.5 * (1 + _np_erf(x / np.sqrt(2.0)))


def _np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _np_silu(x):
    return x / (1 + np.exp(-x))


def _np_softmax(x, axis=-1):
    if x.size == 0:
        return x.copy()
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
    if x.size == 0:
        return x.copy()
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _np_ce(x, t):
    return -_np_log_softmax(x, 1)[np.arange(len(t)), t].mean()


def _np_bce_logits(s, t):
    return (np.maximum(s, 0) - s * t + np.log1p(np.exp(-np.abs(s)))).mean()


def _np_bce(y, t):
    return (-(t * np.log(y) + (1 - t) * np.log(1 - y))).mean()


def _np_margin(x, t):
    n, c = x.shape
    gaps = 1 - x[np.arange(n), t][:, None] + x
    gaps[np.arange(n), t] = 0
    return (np.maximum(gaps, 0).sum(1) / c).mean()


def _np_setitem(x, v):
    out = x.copy()
    out[1:3] = v
    return out


_SCATTER_INDEX = np.array([0, 2, 0, 3, 2])  # rows 0 and 2 receive twice


def _np_scatter_add(x, v):
    out = x.copy()
    np.add.at(out, _SCATTER_INDEX, v)
    return out


def _setitem(x, v):
    y = x * 1  # a non-leaf, so the in-place write records the setitem op
    y[1:3] = v
    return y


ELEMENTWISE_SHAPES = [[(3, 4)], [(2, 1, 3)], [()], [(0, 3)], [(1,)]]
BINARY_SHAPES = [[(3, 4), (3, 4)], [(3, 4), (4,)], [(2, 1), (1, 3)], [(), (2, 3)], [(0, 2), (2,)]]
REDUCE_SAMPLES = [
    ((3, 4), {}),
    ((3, 4), {"axis": 0}),
    ((2, 3, 4), {"axis": (0, 2), "keepdims": True}),
    ((2, 3, 4), {"axis": -1}),
    ((5,), {"axis": 0}),
    ((1, 3), {"axis": 1, "keepdims": True}),
    ((), {}),
    ((), {"axis": 0}),
    ((), {"axis": -1}),
    ((0, 3), {"axis": 1}),
]


def _numpy_axis(x, kw):
    """A 0-d input reduces over axis 0 or -1 as over None (PyTorch's rule, which np.mean and
    np.var do not follow)."""
    return {**kw, "axis": None} if x.ndim == 0 and "axis" in kw else kw


def _reduction(name, method, ref, gen=normal):
    """One entry per (shape, kwargs) sample; kwargs ride along in the shape list."""
    return [
        OpInfo(
            name,
            lambda x, kw=kw: getattr(x, method)(**kw),
            lambda x, kw=kw: ref(x, **_numpy_axis(x, kw)),
            [[shape]],
            (gen,),
            note=str(kw),
        )
        for shape, kw in REDUCE_SAMPLES
    ]


OP_INFOS = [
    OpInfo("add", lambda x, y: x + y, np.add, BINARY_SHAPES),
    OpInfo("sub", lambda x, y: x - y, np.subtract, BINARY_SHAPES),
    OpInfo("mul", lambda x, y: x * y, np.multiply, BINARY_SHAPES),
    OpInfo("div", lambda x, y: x / y, np.divide, BINARY_SHAPES, (normal, positive)),
    OpInfo("neg", lambda x: -x, np.negative, ELEMENTWISE_SHAPES),
    OpInfo("pow", lambda x, y: x**y, np.power, BINARY_SHAPES[:4], (positive, normal)),
    OpInfo("pow", lambda x: x**3, lambda x: x**3, ELEMENTWISE_SHAPES, note="scalar exponent"),
    OpInfo(
        "matmul",
        lambda x, y: x @ y,
        np.matmul,
        [
            [(3, 4), (4, 5)],
            [(4,), (4, 2)],
            [(3, 4), (4,)],
            [(4,), (4,)],
            [(2, 3, 4), (4, 2)],
            [(2, 1, 3, 4), (5, 4, 2)],
            [(3,), (2, 3, 4)],
            [(0, 3), (3, 2)],
        ],
    ),
    OpInfo(
        "linear",
        lambda x, w: F.linear(x, w),
        lambda x, w: x @ w.T,
        [[(3, 4), (5, 4)], [(4,), (2, 4)], [(2, 3, 4), (5, 4)], [(0, 3), (2, 3)]],
    ),
    OpInfo("exp", lambda x: x.exp(), np.exp, ELEMENTWISE_SHAPES),
    OpInfo("log", lambda x: x.log(), np.log, ELEMENTWISE_SHAPES, (positive,)),
    OpInfo("sqrt", lambda x: x.sqrt(), np.sqrt, ELEMENTWISE_SHAPES, (positive,)),
    OpInfo("abs", lambda x: x.abs(), np.abs, ELEMENTWISE_SHAPES, (away_from_zero,)),
    OpInfo("tanh", lambda x: x.tanh(), np.tanh, ELEMENTWISE_SHAPES),
    OpInfo("sigmoid", lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), ELEMENTWISE_SHAPES),
    OpInfo(
        "relu",
        lambda x: x.relu(),
        lambda x: np.maximum(x, 0),
        ELEMENTWISE_SHAPES,
        (away_from_zero,),
    ),
    OpInfo(
        "leaky_relu",
        lambda x: x.leaky_relu(0.1),
        lambda x: np.where(x > 0, x, 0.1 * x),
        ELEMENTWISE_SHAPES,
        (away_from_zero,),
    ),
    OpInfo("maximum", gg.maximum, np.maximum, BINARY_SHAPES, (distinct,)),
    OpInfo("minimum", gg.minimum, np.minimum, BINARY_SHAPES, (distinct,)),
    OpInfo(
        "where",
        gg.where,
        np.where,
        [[(3, 4), (3, 4), (3, 4)], [(3, 4), (4,), (3, 1)], [(2, 3), (), (2, 3)]],
        nondiff=(0,),
        int_inputs={0: _mask},
    ),
    OpInfo(
        "clip",
        lambda x: x.clip(-0.5, 0.7),
        lambda x: np.clip(x, -0.5, 0.7),
        ELEMENTWISE_SHAPES,
        (lambda rng, s: rng.choice([-1.0, -0.2, 0.1, 0.5, 1.2], s) + rng.uniform(-0.05, 0.05, s),),
    ),
    OpInfo(
        "cast",
        lambda x: x.to(gg.float32 if x.dtype == gg.float64 else gg.float64),
        lambda x: x.astype(np.float32 if x.dtype == np.float64 else np.float64),
        [[(3, 4)]],
        keeps_dtype=False,
        finite_differences=False,  # float32 rounding defeats eps=1e-6; see test_tensor.py
    ),
    *_reduction("sum", "sum", np.sum),
    *_reduction("mean", "mean", np.mean),
    *_reduction("max", "max", np.max, distinct),
    *_reduction("min", "min", np.min, distinct),
    *_reduction("var", "var", np.var),
    OpInfo("var", lambda x: x.var(axis=1, ddof=1), lambda x: x.var(axis=1, ddof=1), [[(3, 5)]]),
    OpInfo("reshape", lambda x: x.reshape(4, 3), lambda x: x.reshape(4, 3), [[(3, 4)], [(12,)]]),
    OpInfo("reshape", lambda x: x.reshape((2, -1)), lambda x: x.reshape(2, -1), [[(2, 3, 2)]]),
    OpInfo("transpose", lambda x: x.T, lambda x: x.T, [[(3, 4)], [(2, 3, 4)], [(5,)]]),
    OpInfo(
        "transpose",
        lambda x: x.transpose(1, 2, 0),
        lambda x: x.transpose(1, 2, 0),
        [[(2, 3, 4)]],
    ),
    OpInfo(
        "broadcast_to",
        lambda x: x.broadcast_to(2, 3, 4),
        lambda x: np.broadcast_to(x, (2, 3, 4)),
        [[(3, 1)], [(4,)], [()]],
    ),
    OpInfo(
        "expand_dims",
        lambda x: x.expand_dims(1),
        lambda x: np.expand_dims(x, 1),
        [[(3, 4)], [(2,)]],
    ),
    OpInfo(
        "squeeze",
        lambda x: x.squeeze(),
        lambda x: np.squeeze(x),
        [[(3, 1, 4)], [(1, 1)], [(1, 2, 1)]],
    ),
    OpInfo("getitem", lambda x: x[1:, ::2], lambda x: x[1:, ::2], [[(4, 5)]]),
    OpInfo("getitem", lambda x: x[..., 0], lambda x: x[..., 0], [[(3, 4)], [(2, 3, 4)]]),
    OpInfo(
        "getitem",
        lambda x: x[np.array([0, 2, 0, 1])],
        lambda x: x[np.array([0, 2, 0, 1])],
        [[(3, 2)], [(3,)]],
        note="integer array with repeats: the backward scatter-adds",
    ),
    OpInfo("getitem", lambda x: x[x.numpy() > 0], lambda x: x[x > 0], [[(4, 3)]], note="mask"),
    OpInfo("setitem", _setitem, _np_setitem, [[(4, 3), (2, 3)], [(4, 3), (3,)], [(5,), ()]]),
    OpInfo(
        "scatter_add",
        lambda x, v: gg.OPS["scatter_add"](x, v, index=_SCATTER_INDEX),
        _np_scatter_add,
        [[(4, 3), (5, 3)], [(4, 3), (3,)], [(4,), (5,)]],
        note="repeated rows add up",
    ),
    OpInfo(
        "concatenate",
        lambda *xs: gg.concatenate(xs, axis=1),
        lambda *xs: np.concatenate(xs, axis=1),
        [[(2, 3), (2, 1), (2, 2)], [(3, 0), (3, 2)]],
    ),
    OpInfo(
        "stack",
        lambda *xs: gg.stack(xs, axis=1),
        lambda *xs: np.stack(xs, axis=1),
        [[(2, 3), (2, 3)], [(4,), (4,), (4,)]],
    ),
    OpInfo("softmax", F.softmax, _np_softmax, [[(3, 5)], [(2, 3, 4)], [(1, 1)], [(5, 0, 0)]]),
    OpInfo(
        "softmax",
        lambda x: F.softmax(x, axis=0),
        lambda x: _np_softmax(x, 0),
        [[(3, 5)]],
        note="axis=0",
    ),
    OpInfo(
        "log_softmax", F.log_softmax, _np_log_softmax, [[(3, 5)], [(2, 3, 4)], [(4,)], [(5, 0, 0)]]
    ),
    OpInfo(
        "cross_entropy",
        F.cross_entropy,
        _np_ce,
        [[(4, 5), (4,)], [(1, 3), (1,)], [(6, 2), (6,)]],
        nondiff=(1,),
        int_inputs={1: _labels},
    ),
    OpInfo(
        "binary_cross_entropy_with_logits",
        F.binary_cross_entropy_with_logits,
        _np_bce_logits,
        [[(4, 3), (4, 3)], [(5,), (5,)]],
        (normal, probabilities),
    ),
    OpInfo(
        "binary_cross_entropy",
        F.binary_cross_entropy,
        _np_bce,
        [[(4, 3), (4, 3)], [(5,), (5,)]],
        (probabilities,),
    ),
    OpInfo(
        "mse_loss",
        F.mse_loss,
        lambda y, t: ((y - t) ** 2).mean(),
        [[(4, 3), (4, 3)], [(5,), (5,)], [(), ()]],
    ),
    OpInfo(
        "multi_margin_loss",
        F.multi_margin_loss,
        _np_margin,
        [[(4, 5), (4,)], [(3, 2), (3,)]],
        (lambda rng, s: distinct(rng, s) * 3.7,),  # no gap lands on the hinge
        nondiff=(1,),
        int_inputs={1: _labels},
    ),
]


def _np_bias_act(activation):
    acts = {
        "relu": lambda y: np.maximum(y, 0),
        "leaky_relu": lambda y: np.where(y > 0, y, 0.1 * y),
        "tanh": np.tanh,
        "sigmoid": lambda y: 1 / (1 + np.exp(-y)),
        "gelu": _np_gelu,
        "gelu_tanh": _np_gelu_tanh,
        "silu": _np_silu,
        "identity": lambda y: y,
    }
    return lambda z, b: acts[activation](z + b)


def _small(rng, shape):
    return rng.uniform(-0.1, 0.1, shape)  # with |z| >= 0.2, z + b stays off the kink at 0


OP_INFOS += [
    OpInfo(
        "bias_act",
        (lambda a: lambda z, b: fused.bias_act(z, b, activation=a, negative_slope=0.1))(act),
        _np_bias_act(act),
        [[(4, 3), (3,)], [(2, 3, 5), (5,)], [(0, 3), (3,)]],
        (away_from_zero, _small),
        note=act,
    )
    for act in ("relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "identity")
]


# ----------------------------------------------------------------------------- layers and losses
# GELU, SiLU, erf, LayerNorm, BatchNorm, embedding, and the losses with class weights, label
# smoothing, pos_weight, L1 and Huber. References are written from PyTorch's definitions.


def _np_layer_norm(x, w=None, b=None, k=1, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    xc = x - x.mean(axis=axes, keepdims=True)
    y = xc / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    return y if w is None else y * w + b


def _np_batch_norm(x, w, b, eps=1e-5):
    axes = (0, *range(2, x.ndim))
    shape = (-1,) + (1,) * (x.ndim - 2)
    xc = x - x.mean(axis=axes, keepdims=True)
    y = xc / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    return y * w.reshape(shape) + b.reshape(shape)


_CLASS_WEIGHTS = np.array([0.5, 1.0, 2.0, 1.5, 0.7])  # five classes
_POS_WEIGHT = np.array([3.0, 0.5, 1.0])


def _const(array, like):
    """A fixed array as a constant tensor of ``like``'s dtype and device."""
    return gg.tensor(np.asarray(array, like.dtype), device=like.device)


def _labels_some_ignored(rng, shape, shapes):
    labels = _labels(rng, shape, shapes)
    labels[::3] = -100  # rows 0, 3, ...: ignore_index
    return labels


def _np_nll_rows(logp, t, weight, ignore_index=-100):
    """(per-row weighted losses, the per-row target weights) of PyTorch's nll_loss."""
    valid = t != ignore_index
    safe = np.where(valid, t, 0)
    w = np.ones(logp.shape[1]) if weight is None else weight
    wt = np.where(valid, w[safe], 0.0)
    return -wt * logp[np.arange(len(t)), safe], wt


def _np_ce_full(x, t, weight=None, label_smoothing=0.0, ignore_index=-100):
    """PyTorch's cross_entropy, mean reduction, from its definition."""
    logp = _np_log_softmax(x, 1)
    nll, wt = _np_nll_rows(logp, t, weight, ignore_index)
    w = np.ones(x.shape[1]) if weight is None else weight
    smooth = np.where(t != ignore_index, -(logp * w).sum(axis=1), 0.0)
    c = x.shape[1]
    return ((1 - label_smoothing) * nll.sum() + label_smoothing / c * smooth.sum()) / wt.sum()


def _np_nll(logp, t, weight=None):
    nll, wt = _np_nll_rows(logp, t, weight)
    return nll.sum() / wt.sum()


def _np_bce_logits_weighted(s, t, weight, pos_weight):
    softplus_neg = np.log1p(np.exp(-np.abs(s))) + np.maximum(-s, 0)
    return (weight * ((1 - t) * s + (1 + (pos_weight - 1) * t) * softplus_neg)).mean()


def _np_huber(y, t, delta=1.0, smooth_l1=False):
    d = np.abs(y - t)
    per = np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return (per / delta if smooth_l1 else per).mean()


def _np_margin_weighted(x, t, weight):
    n, c = x.shape
    gaps = 1 - x[np.arange(n), t][:, None] + x
    gaps[np.arange(n), t] = 0
    return (np.maximum(gaps, 0).sum(1) / c * weight[t]).mean()


_EMBED_INDEX = np.array([[0, 2, 0], [3, 2, 1]])  # rows 0 and 2 twice: the gradients add


def _embed(w):
    return F.embedding(gg.tensor(_EMBED_INDEX, device=w.device), w)


OP_INFOS += [
    OpInfo("erf", lambda x: gg.OPS["erf"](x), _np_erf, ELEMENTWISE_SHAPES),
    OpInfo("gelu", F.gelu, _np_gelu, ELEMENTWISE_SHAPES, note="exact"),
    OpInfo(
        "gelu",
        lambda x: F.gelu(x, approximate="tanh"),
        _np_gelu_tanh,
        ELEMENTWISE_SHAPES,
        note="tanh",
    ),
    OpInfo("silu", F.silu, _np_silu, ELEMENTWISE_SHAPES),
    OpInfo(
        "layer_norm",
        lambda x, w, b: F.layer_norm(x, w.shape, w, b),
        lambda x, w, b: _np_layer_norm(x, w, b, k=w.ndim),
        [
            [(4, 5), (5,), (5,)],
            [(2, 3, 4), (3, 4), (3, 4)],
            [(6,), (6,), (6,)],
            [(3, 1), (1,), (1,)],
            [(0, 3), (3,), (3,)],
        ],
    ),
    OpInfo(
        "layer_norm",
        lambda x: F.layer_norm(x, x.shape[-1:]),
        _np_layer_norm,
        [[(4, 5)], [(2, 3, 7)]],
        note="no affine",
    ),
    OpInfo(
        "batch_norm",
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        _np_batch_norm,
        [[(4, 3), (3,), (3,)], [(2, 3, 5), (3,), (3,)], [(5, 1), (1,), (1,)]],
    ),
    OpInfo(
        "batch_norm",
        lambda x, w, b: F.batch_norm(
            x, _const(np.zeros(3), x), _const(np.ones(3), x), w, b, training=True
        ),
        _np_batch_norm,
        [[(4, 3), (3,), (3,)]],
        note="updating running statistics",
    ),
    OpInfo(
        "embedding",
        _embed,
        lambda w: w[_EMBED_INDEX],
        [[(4, 3)], [(5, 1)], [(4, 0)]],
        note="repeated indices",
    ),
    OpInfo(
        "nll_loss",
        F.nll_loss,
        _np_nll,
        [[(4, 5), (4,)], [(1, 3), (1,)], [(6, 2), (6,)]],
        nondiff=(1,),
        int_inputs={1: _labels},
    ),
    OpInfo(
        "nll_loss",
        lambda x, t: F.nll_loss(x, t, weight=_const(_CLASS_WEIGHTS, x)),
        lambda x, t: _np_nll(x, t, _CLASS_WEIGHTS),
        [[(4, 5), (4,)], [(7, 5), (7,)]],
        nondiff=(1,),
        int_inputs={1: _labels_some_ignored},
        note="weight, ignore_index",
    ),
    OpInfo(
        "cross_entropy",
        lambda x, t: F.cross_entropy(x, t, weight=_const(_CLASS_WEIGHTS, x), label_smoothing=0.1),
        lambda x, t: _np_ce_full(x, t, _CLASS_WEIGHTS, 0.1),
        [[(4, 5), (4,)], [(7, 5), (7,)]],
        nondiff=(1,),
        int_inputs={1: _labels_some_ignored},
        note="weight, label_smoothing, ignore_index",
    ),
    OpInfo(
        "cross_entropy",
        lambda x, t: F.cross_entropy(x, t, label_smoothing=0.2),
        lambda x, t: _np_ce_full(x, t, None, 0.2),
        [[(4, 5), (4,)], [(3, 2), (3,)]],
        nondiff=(1,),
        int_inputs={1: _labels},
        note="label_smoothing",
    ),
    OpInfo(
        "binary_cross_entropy_with_logits",
        lambda s, t: F.binary_cross_entropy_with_logits(
            s, t, weight=_const([0.5, 2.0, 1.0], s), pos_weight=_const(_POS_WEIGHT, s)
        ),
        lambda s, t: _np_bce_logits_weighted(s, t, np.array([0.5, 2.0, 1.0]), _POS_WEIGHT),
        [[(4, 3), (4, 3)], [(3,), (3,)]],
        (normal, probabilities),
        note="weight, pos_weight",
    ),
    OpInfo(
        "l1_loss",
        F.l1_loss,
        lambda y, t: np.abs(y - t).mean(),
        [[(4, 3), (4, 3)], [(5,), (5,)], [(), ()]],
        (away_from_zero, _small),  # |y - t| >= 0.1: off the kink at y == t
    ),
    OpInfo(
        "huber_loss",
        F.huber_loss,
        _np_huber,
        [[(4, 3), (4, 3)], [(5,), (5,)], [(), ()]],
    ),
    OpInfo(
        "huber_loss",
        lambda y, t: F.smooth_l1_loss(y, t, beta=0.5),
        lambda y, t: _np_huber(y, t, 0.5, smooth_l1=True),
        [[(4, 3), (4, 3)], [(5,), (5,)]],
        note="smooth_l1 beta=0.5",
    ),
    OpInfo(
        "multi_margin_loss",
        lambda x, t: F.multi_margin_loss(x, t, weight=_const(_CLASS_WEIGHTS, x)),
        lambda x, t: _np_margin_weighted(x, t, _CLASS_WEIGHTS),
        [[(4, 5), (4,)]],
        (lambda rng, s: distinct(rng, s) * 3.7,),
        nondiff=(1,),
        int_inputs={1: _labels},
        note="weight",
    ),
]

# Ops that need something a single CPU cannot give; their tests live elsewhere.
NOT_SAMPLED_HERE = {
    "to_device": "moves between two devices: tests/test_tensor.py (CPU) and the GPU tests",
}


# ----------------------------------------------------------------------------- compositions
# Fused ops written with unfused table entries only: the fused kernels must agree with these
# (reliability row 23 in tests/README.md). Each takes the arguments its entry's ``fn`` takes.


def softmax_composed(x, axis=-1):
    if x.size == 0:  # no row to normalise: the empty result of the fused op
        return x * 1.0
    e = (x - x.max(axis=axis, keepdims=True).detach()).exp()
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax_composed(x, axis=-1):
    if x.size == 0:
        return x * 1.0
    s = x - x.max(axis=axis, keepdims=True).detach()
    return s - s.exp().sum(axis=axis, keepdims=True).log()


def cross_entropy_composed(x, t, reduction="mean", ignore_index=-100):
    labels = t.numpy()
    valid = labels != ignore_index
    picked = log_softmax_composed(x, 1)[np.arange(len(labels)), np.where(valid, labels, 0)]
    per_row = gg.where(valid, -picked, 0.0)
    if reduction == "none":
        return per_row
    return per_row.sum() if reduction == "sum" else per_row.sum() / int(valid.sum())


def bce_with_logits_composed(s, t, reduction="mean"):
    per_item = s.relu() - s * t + (1 + (-s.abs()).exp()).log()
    if reduction == "none":
        return per_item
    return per_item.sum() if reduction == "sum" else per_item.mean()


def bce_composed(y, t):
    return -(t * y.log().clip(min=-100) + (1 - t) * (1 - y).log().clip(min=-100)).mean()


def mse_composed(y, t, reduction="mean"):
    d = y - t
    per_item = d * d
    if reduction == "none":
        return per_item
    return per_item.sum() if reduction == "sum" else per_item.mean()


def multi_margin_composed(x, t, margin=1.0):
    n, c = x.shape
    labels = t.numpy()
    others = np.ones((n, c), x.dtype)
    others[np.arange(n), labels] = 0
    gaps = margin - x[np.arange(n), labels].reshape(n, 1) + x
    return ((gaps.relu() * others).sum(axis=1) / c).mean()


_ACTS = {
    "relu": lambda y: y.relu(),
    "leaky_relu": lambda y: y.leaky_relu(0.1),
    "tanh": lambda y: y.tanh(),
    "sigmoid": lambda y: y.sigmoid(),
    "gelu": lambda y: F.gelu(y),
    "gelu_tanh": lambda y: F.gelu(y, approximate="tanh"),
    "silu": lambda y: F.silu(y),
    "identity": lambda y: y,
}


def _normalized(x, axes, eps=1e-5):
    xc = x - x.mean(axis=axes, keepdims=True)
    return xc / ((xc * xc).mean(axis=axes, keepdims=True) + eps).sqrt()


def layer_norm_composed(x, w=None, b=None):
    y = _normalized(x, tuple(range(x.ndim - (1 if w is None else w.ndim), x.ndim)))
    return y if w is None else y * w + b


def batch_norm_composed(x, w, b):
    shape = (-1,) + (1,) * (x.ndim - 2)
    y = _normalized(x, (0, *range(2, x.ndim)))
    return y * w.reshape(shape) + b.reshape(shape)


def _picked(x, t):
    labels = t.numpy()
    valid = labels != -100
    return x[np.arange(len(labels)), np.where(valid, labels, 0)], valid


def cross_entropy_smoothed_composed(x, t, weight=None, label_smoothing=0.0):
    """(1 - e) nll + e / C * sum_c w_c (-logp_c), over the summed target weights."""
    logp = log_softmax_composed(x, 1)
    picked, valid = _picked(logp, t)
    w = np.ones(x.shape[1]) if weight is None else weight
    wt = _const(np.where(valid, w[np.where(valid, t.numpy(), 0)], 0.0), x)
    spread = -(logp * _const(w, x)).sum(axis=1)
    per_row = (1 - label_smoothing) * -(wt * picked) + label_smoothing / x.shape[1] * gg.where(
        valid, spread, 0.0
    )
    return per_row.sum() / float(wt.numpy().sum())


def nll_composed(x, t, weight=None):
    picked, valid = _picked(x, t)
    w = np.ones(x.shape[1]) if weight is None else weight
    wt = np.where(valid, w[np.where(valid, t.numpy(), 0)], 0.0)
    return -(_const(wt, x) * picked).sum() / float(wt.sum())


def bce_with_logits_weighted_composed(s, t):
    w, pw = _const([0.5, 2.0, 1.0], s), _const(_POS_WEIGHT, s)
    softplus_neg = (1 + (-s.abs()).exp()).log() + (-s).relu()
    return (w * ((1 - t) * s + (1 + (pw - 1) * t) * softplus_neg)).mean()


def huber_composed(y, t, delta=1.0, smooth_l1=False):
    d = y - t
    a = d.abs()
    per = gg.where(a.numpy() < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return (per / delta if smooth_l1 else per).mean()


def _entries(name, note=None):
    found = [i for i in OP_INFOS if i.name == name and (note is None or i.note == note)]
    assert found, f"no op-info entry {name} {note or ''}"
    return found


_entries("softmax", "")[0].composed = softmax_composed
_entries("softmax", "axis=0")[0].composed = lambda x: softmax_composed(x, axis=0)
for _info in _entries("log_softmax"):
    _info.composed = log_softmax_composed
for _info in _entries("cross_entropy", ""):
    _info.composed = cross_entropy_composed
_entries("binary_cross_entropy_with_logits")[0].composed = bce_with_logits_composed
_entries("binary_cross_entropy")[0].composed = bce_composed
_entries("mse_loss")[0].composed = mse_composed
_entries("multi_margin_loss")[0].composed = multi_margin_composed
for _info in _entries("bias_act"):
    _info.composed = (lambda act: lambda z, b: _ACTS[act](z + b))(_info.note)
_entries("layer_norm", "")[0].composed = layer_norm_composed
_entries("layer_norm", "no affine")[0].composed = layer_norm_composed
_entries("batch_norm", "")[0].composed = batch_norm_composed
_entries("nll_loss", "")[0].composed = nll_composed
_entries("nll_loss", "weight, ignore_index")[0].composed = lambda x, t: nll_composed(
    x, t, _CLASS_WEIGHTS
)
_entries("cross_entropy", "weight, label_smoothing, ignore_index")[0].composed = lambda x, t: (
    cross_entropy_smoothed_composed(x, t, _CLASS_WEIGHTS, 0.1)
)
_entries("cross_entropy", "label_smoothing")[0].composed = lambda x, t: (
    cross_entropy_smoothed_composed(x, t, None, 0.2)
)
_entries("binary_cross_entropy_with_logits", "weight, pos_weight")[
    0
].composed = bce_with_logits_weighted_composed
_entries("l1_loss")[0].composed = lambda y, t: (y - t).abs().mean()
_entries("huber_loss", "")[0].composed = huber_composed
_entries("huber_loss", "smooth_l1 beta=0.5")[0].composed = lambda y, t: huber_composed(
    y, t, 0.5, smooth_l1=True
)

# ----------------------------------------------------------------------------- kinks
# Inputs exactly on a kink and the subgradient of out.sum() the project documents there
# (README "Conventions"; reliability row 9 in tests/README.md). Finite differences cannot check
# these.

_f = np.array
_entries("relu")[0].kink = ([_f([-1.0, 0.0, 2.0])], [_f([0.0, 0.0, 1.0])])
_entries("abs")[0].kink = ([_f([-1.0, 0.0, 2.0])], [_f([-1.0, 0.0, 1.0])])
_entries("leaky_relu")[0].kink = ([_f([-1.0, 0.0, 2.0])], [_f([0.1, 0.1, 1.0])])
_entries("clip")[0].kink = ([_f([-0.5, 0.7, 0.0, 1.0, -2.0])], [_f([1.0, 1.0, 1.0, 0.0, 0.0])])
_entries("max", "{}")[0].kink = ([_f([[1.0, 3.0], [3.0, 0.0]])], [_f([[0.0, 0.5], [0.5, 0.0]])])
_entries("min", "{}")[0].kink = ([_f([[1.0, 3.0], [1.0, 2.0]])], [_f([[0.5, 0.0], [0.5, 0.0]])])
_entries("max", "{'axis': 0}")[0].kink = (
    [_f([[2.0, 1.0], [2.0, 0.0], [2.0, 1.0]])],
    [_f([[1 / 3, 0.5], [1 / 3, 0.0], [1 / 3, 0.5]])],
)
_entries("maximum")[0].kink = ([_f([1.0, 2.0]), _f([1.0, 0.0])], [_f([0.5, 1.0]), _f([0.5, 0.0])])
_entries("minimum")[0].kink = ([_f([1.0, 2.0]), _f([1.0, 0.0])], [_f([0.5, 0.0]), _f([0.5, 1.0])])
_entries("bias_act", "relu")[0].kink = (
    [_f([[-1.0, 0.0, 2.0]]), _f([0.0, 0.0, 0.0])],
    [_f([[0.0, 0.0, 1.0]]), _f([0.0, 0.0, 1.0])],
)
_entries("bias_act", "leaky_relu")[0].kink = (
    [_f([[-1.0, 0.0, 2.0]]), _f([0.0, 0.0, 0.0])],
    [_f([[0.1, 0.1, 1.0]]), _f([0.1, 0.1, 1.0])],
)
_entries("l1_loss")[0].kink = (
    [_f([1.0, 2.0, -1.0]), _f([1.0, 0.0, 0.0])],
    [_f([0.0, 1 / 3, -1 / 3]), _f([0.0, -1 / 3, 1 / 3])],
)
# the hinge of class 1 sits exactly at 0 (1 - 0 + (-1)): inactive, as torch's z > 0 test
_entries("multi_margin_loss")[0].kink = (
    [_f([[0.0, -1.0, -3.0]]), _f([0])],
    [_f([[0.0, 0.0, 0.0]]), None],
)

# ----------------------------------------------------------------------------- large inputs
# Shapes where per-element finite differences would take thousands of forward calls: checked
# along random directions instead (gg.gradcheck(mode="random")).

_LARGE = {
    ("add", ""): [[(64, 48), (48,)]],
    ("mul", ""): [[(64, 48), (64, 1)]],
    ("div", ""): [[(64, 48), (64, 48)]],
    ("matmul", ""): [[(32, 64), (64, 16)], [(4, 16, 32), (32, 8)]],
    ("linear", ""): [[(32, 64), (16, 64)], [(4, 16, 32), (8, 32)]],
    ("tanh", ""): [[(100, 100)]],
    ("sigmoid", ""): [[(100, 100)]],
    ("exp", ""): [[(100, 100)]],
    ("sum", "{'axis': 0}"): [[(100, 64)]],
    ("mean", "{'axis': 0}"): [[(100, 64)]],
    ("var", "{'axis': 0}"): [[(100, 64)]],
    ("max", "{'axis': 0}"): [[(100, 64)]],
    ("softmax", ""): [[(64, 100)]],
    ("log_softmax", ""): [[(64, 100)]],
    ("cross_entropy", ""): [[(256, 10), (256,)], [(16, 300), (16,)]],
    ("binary_cross_entropy_with_logits", ""): [[(64, 64), (64, 64)]],
    ("mse_loss", ""): [[(64, 64), (64, 64)]],
    ("multi_margin_loss", ""): [[(64, 10), (64,)]],
    ("bias_act", "tanh"): [[(128, 64), (64,)]],
    ("bias_act", "relu"): [[(128, 64), (64,)]],
    ("bias_act", "gelu"): [[(128, 64), (64,)]],
    ("bias_act", "silu"): [[(128, 64), (64,)]],
    ("gelu", "exact"): [[(100, 100)]],
    ("gelu", "tanh"): [[(100, 100)]],
    ("silu", ""): [[(100, 100)]],
    ("layer_norm", ""): [[(64, 48), (48,), (48,)], [(8, 1500), (1500,), (1500,)]],
    ("batch_norm", ""): [[(64, 48), (48,), (48,)]],
    ("embedding", "repeated indices"): [[(40, 30)]],
    ("nll_loss", ""): [[(64, 10), (64,)]],
    ("getitem", "integer array with repeats: the backward scatter-adds"): [[(50, 40)]],
}
for (_name, _note), _shapes in _LARGE.items():
    _entries(_name, _note)[0].large = _shapes
