"""``gpugrad check``: crosscheck every op, every loss and small MLPs between two devices.

The reference side is always the CPU in float64 with the fast paths off (the plain op table);
the checked side is the GPU in float32 when there is one. Without a GPU, ``--devices cpu,cpu``
checks the CPU's Numba fast paths and float32 arithmetic the same way.
"""

from __future__ import annotations

import time

import numpy as np

from . import activations
from . import functional as F
from .creation import concatenate, maximum, minimum, stack, where
from .crosscheck import CrossCheckError, crosscheck
from .dispatch import OPS
from .fused import bias_act
from .tensor import Tensor

_rng = np.random.default_rng(0)


def _x(*shape, low=None):
    """A float64 leaf that requires grad; ``low`` keeps values in a domain (log, sqrt)."""
    a = _rng.uniform(low, low + 2, shape) if low is not None else _rng.standard_normal(shape)
    return Tensor(a, requires_grad=True)


def _labels(n, c):
    return Tensor(_rng.integers(0, c, n))


def _mlp(activation):
    """A 12-16-16-5 MLP as nn runs it (Linear + activation fused), on the check's leaves."""
    from .nn.layers import linear_act

    sizes = [12, 16, 16, 5]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        bound = 1 / np.sqrt(fan_in)
        params += [
            Tensor(_rng.uniform(-bound, bound, (fan_out, fan_in)), requires_grad=True),
            Tensor(_rng.uniform(-bound, bound, fan_out), requires_grad=True),
        ]

    def fn(x, t, *ps):  # the labels are an input: crosscheck moves them to each device
        h = x
        for k in range(0, len(ps) - 2, 2):
            h = linear_act(h, ps[k], ps[k + 1], activation, 0.01)
        return F.cross_entropy(F.linear(h, ps[-2], ps[-1]), t)

    return fn, [_x(8, 12), _labels(8, 5), *params]


def cases():
    """(name, fn, inputs) for every op family, loss and an MLP per activation."""
    out = [
        ("add/sub/mul/div", lambda a, b: ((a + b) * (a - b) / (b * b + 1)).sum(),
         [_x(4, 5), _x(5)]),
        ("pow/neg", lambda a: (-(a**3) + a**2).sum(), [_x(3, 4)]),
        ("matmul", lambda a, b: (a @ b).sum(), [_x(6, 7), _x(7, 3)]),
        ("exp/log/sqrt", lambda a: (a.exp() + a.log() + a.sqrt()).sum(), [_x(3, 5, low=0.5)]),
        ("abs/tanh/sigmoid", lambda a: (a.abs() + a.tanh() + a.sigmoid()).sum(), [_x(4, 6)]),
        ("relu/leaky_relu", lambda a: (a.relu() + a.leaky_relu(0.1)).sum(), [_x(64, 33)]),
        ("maximum/minimum/where", lambda a, b: (maximum(a, b) - minimum(a, b)
                                               + where(a > b, a, b)).sum(), [_x(5, 4), _x(4)]),
        ("clip", lambda a: a.clip(-0.5, 0.5).sum(), [_x(5, 5)]),
        ("reductions", lambda a: a.sum(axis=0).sum() + a.mean(axis=1).sum() + a.max()
         + a.min(axis=(0, 1)) + a.var(axis=1, ddof=1).sum(), [_x(6, 7)]),
        ("shapes", lambda a: a.reshape(7, 6).T.expand_dims(0).squeeze(0)[1:, ::2].sum()
         + a.broadcast_to(2, 6, 7).sum(), [_x(6, 7)]),
        ("getitem/concat/stack", lambda a, b: concatenate([a, b], axis=0)[[0, 2, 2]].sum()
         + stack([a, b]).sum(), [_x(3, 4), _x(3, 4)]),
        ("softmax/log_softmax", lambda a: (F.softmax(a) * F.log_softmax(a)).sum(), [_x(8, 1500)]),
        ("cross_entropy", F.cross_entropy, [_x(16, 10), _labels(16, 10)]),
        ("cross_entropy wide", F.cross_entropy, [_x(4, 2000), _labels(4, 2000)]),
        ("bce_with_logits", lambda a, b: F.binary_cross_entropy_with_logits(a, b),
         [_x(16, 3), Tensor(_rng.uniform(0, 1, (16, 3)))]),
        ("bce", lambda a, b: F.binary_cross_entropy(a.sigmoid(), b),
         [_x(8, 3), Tensor(_rng.uniform(0, 1, (8, 3)))]),
        ("mse_loss", lambda a, b: F.mse_loss(a, b), [_x(16, 3), _x(16, 3)]),
        ("multi_margin_loss", F.multi_margin_loss, [_x(8, 6), _labels(8, 6)]),
        ("gelu/silu/erf", lambda a: (F.gelu(a) + F.gelu(a, "tanh") + F.silu(a)
                                     + OPS["erf"](a)).sum(), [_x(64, 33)]),
        ("layer_norm", lambda a, w, b: (F.layer_norm(a, 33, w, b) ** 2).sum(),
         [_x(16, 33), _x(33), _x(33)]),
        ("layer_norm wide", lambda a, w, b: (F.layer_norm(a, 1500, w, b) ** 2).sum(),
         [_x(4, 1500), _x(1500), _x(1500)]),
        ("batch_norm", lambda a, w, b: (F.batch_norm(a, None, None, w, b, True) ** 2).sum(),
         [_x(16, 5, 3), _x(5), _x(5)]),
        ("embedding", lambda w, ids: (F.embedding(ids, w) ** 2).sum(), [_x(7, 4), _labels(12, 7)]),
        ("cross_entropy weight+smoothing", lambda a, t, w: F.cross_entropy(
            a, t, weight=w, label_smoothing=0.1), [_x(16, 10), _labels(16, 10),
                                                   Tensor(_rng.uniform(0.5, 2, 10))]),
        ("nll/l1/huber", lambda a, t, b: F.nll_loss(F.log_softmax(a), t) + F.l1_loss(a, b)
         + F.huber_loss(a, b, delta=0.5), [_x(8, 6), _labels(8, 6), _x(8, 6)]),
    ]  # fmt: skip
    for act in activations.NAMES:
        out.append((f"bias_act {act}", lambda z, b, a=act: bias_act(z, b, activation=a).sum(),
                    [_x(32, 17), _x(17)]))  # fmt: skip
    for act in activations.HIDDEN:
        fn, inputs = _mlp(act)
        out.append((f"MLP 12-16-16-5 {act}", fn, inputs))
    return out


def run(
    devices=("cpu", "cuda"),
    dtype=np.float32,
    rtol=1e-3,
    atol=1e-4,
    out=print,
    checked_label=None,
    caught=(),
) -> int:
    """Crosscheck every built-in case, print one table row per case; 0 if all agree, else 1.

    ``checked_label`` names the checked device in the table (default: ``devices[1]``);
    ``caught`` are exceptions a case may raise on the checked device (the emulated device's
    faults) that count as a failing row, their messages printed after the table.
    """
    label = checked_label or devices[1]
    out(f"crosscheck: {label} {np.dtype(dtype)} against {devices[0]} float64 reference")
    out(
        f"(a value agrees when |checked - reference| <= {atol} + {rtol} * |reference|; the "
        "errors are the largest over every value; the relative one counts values whose "
        f"reference is above {atol} in size)"
    )
    out("| case | ops | max abs err | max rel err | result | ms |")
    out("|---|---|---|---|---|---|")
    failures, raised = 0, []
    all_cases = cases()
    for name, fn, inputs in all_cases:
        start = time.perf_counter()
        try:
            report = crosscheck(fn, inputs, rtol=rtol, atol=atol, dtype=dtype, devices=devices)
            verdict = "ok"
        except CrossCheckError as e:
            report, failures = e.report, failures + 1
            first = e.first
            verdict = f"DIFFERS at #{first.index} {first.name}" if first else "DIFFERS"
        except caught as e:
            report, failures = None, failures + 1
            raised.append((name, e))
            verdict = f"FAILED: {type(e).__name__} (below)"
        entries = report.entries if report is not None else []
        # The largest errors of any compared value, whether or not within the tolerances.
        worst_abs = max((e.max_abs for e in entries), default=0.0)
        worst_rel = max((e.max_rel for e in entries), default=0.0)
        ops = sum(e.kind == "forward" for e in entries)
        ms = (time.perf_counter() - start) * 1e3
        out(f"| {name} | {ops} | {worst_abs:.2e} | {worst_rel:.2e} | {verdict} | {ms:.0f} |")
    for name, e in raised:
        out(f"{name}: {type(e).__name__}: {e}")
    total = len(all_cases)
    out(f"{total - failures}/{total} cases agree (rtol {rtol}, atol {atol})")
    return 1 if failures else 0
