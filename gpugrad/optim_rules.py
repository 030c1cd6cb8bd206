"""The update rules of gpugrad's optimizers, written once for every implementation.

``sgd`` and ``adam`` are PyTorch's rules (``torch.optim.SGD``, ``Adam``, ``AdamW``) for one
value, on float64 numbers. The same functions serve three places:

- the reference step (``optim/``), which calls them on whole float64 arrays (NumPy or CuPy);
- the Numba kernels (``backends/cpu_optim.py``), which compile them inline for one element;
- the CUDA kernels (``kernels/optim.cu``) follow them line by line and read the hyperparameter
  rows by the column indices that ``cuda_defines()`` prepends to their source.

Each optimizer's hyperparameters travel as one float64 row per parameter, in the column order
of ``SGD_COLUMNS`` / ``ADAM_COLUMNS``; column 0 ("active") is 0 for a parameter without a
gradient this step. Terms that are off are skipped, never multiplied by zero: a parameter at
+inf with weight_decay 0 stays inf instead of becoming 0 * inf = nan. This module imports only
NumPy, so every layer may use it.
"""

from __future__ import annotations

import math

import numpy as np

SGD_COLUMNS = (
    "active",
    "lr",
    "momentum",
    "dampening",
    "weight_decay",
    "nesterov",
    "maximize",
    "first",  # 1 on the step that creates the momentum buffer
)
ADAM_COLUMNS = (
    "active",
    "lr",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "amsgrad",
    "decoupled",  # 1 for AdamW
    "maximize",
    "step",
)


def sgd(p, g, buf, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """One SGD step; returns (new p, new momentum buffer).

    d = g (+ wd * p); buf = d on the first step, else momentum * buf + (1 - dampening) * d;
    p -= lr * (d + momentum * buf if nesterov else buf), or lr * d without momentum.
    """
    d = -g if maximize else g
    if weight_decay != 0.0:
        d = d + weight_decay * p
    if momentum != 0.0:
        # The first step seeds the buffer with the gradient itself, undamped.
        buf = d if first else momentum * buf + (1.0 - dampening) * d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_factors(lr, beta1, beta2, step):
    """(step_size, sqrt(bias correction 2)) of Adam's step number ``step``, once per parameter."""
    return lr / (1.0 - beta1**step), math.sqrt(1.0 - beta2**step)


def adam(p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize,
         step_size, bc2_sqrt):  # fmt: skip
    """One Adam (decoupled False) or AdamW (decoupled True) step; returns (p, m, v, vmax).

    AdamW: p *= 1 - lr * wd first; Adam: g += wd * p. Then m += (1 - beta1) (g - m) (torch's
    lerp), v = beta2 v + (1 - beta2) g^2, v' = max(vmax, v) with AMSGrad (NaN propagates),
    p -= step_size * m / (sqrt(v') / bc2_sqrt + eps).
    """
    d = -g if maximize else g
    if decoupled:
        if weight_decay != 0.0:
            p = p * (1.0 - lr * weight_decay)
    elif weight_decay != 0.0:
        d = d + weight_decay * p
    m = m + (1.0 - beta1) * (d - m)
    v = beta2 * v + (1.0 - beta2) * d * d
    if amsgrad:
        vmax = np.maximum(vmax, v)
        denom = np.sqrt(vmax) / bc2_sqrt + eps
    else:
        denom = np.sqrt(v) / bc2_sqrt + eps
    return p - step_size * m / denom, m, v, vmax


def cuda_defines() -> str:
    """``#define GG_SGD_LR 1``-style column indices for kernels/optim.cu."""
    lines = [f"#define GG_SGD_{c.upper()} {i}\n" for i, c in enumerate(SGD_COLUMNS)]
    lines += [f"#define GG_ADAM_{c.upper()} {i}\n" for i, c in enumerate(ADAM_COLUMNS)]
    lines.append(f"#define GG_SGD_COLUMNS {len(SGD_COLUMNS)}\n")
    lines.append(f"#define GG_ADAM_COLUMNS {len(ADAM_COLUMNS)}\n")
    return "".join(lines)


# ----------------------------------------------------------------------------- on whole arrays
# The reference implementation: the rules above over lists of arrays (NumPy or CuPy), one hp
# row per parameter, in place. Every value is taken to float64 first and rounded once when
# stored, as the kernels do. A row whose "active" column is 0 is skipped. IEEE results (inf,
# NaN) are the answer, as in the kernels, so NumPy's floating-point warnings stay off.


def _f64(a):
    return a.astype(np.float64)


@np.errstate(all="ignore")
def sgd_rows(params, grads, bufs, hp) -> None:
    """SGD over every parameter; ``bufs[k]`` may be None where row k's momentum is 0."""
    for k, (p, g) in enumerate(zip(params, grads, strict=True)):
        active, lr, momentum, dampening, wd, nesterov, maximize, first = (float(v) for v in hp[k])
        if not active:
            continue
        buf = bufs[k]
        old = 0.0 if first or momentum == 0.0 else _f64(buf)
        new_p, new_buf = sgd(_f64(p), _f64(g), old, lr, momentum, dampening, wd, bool(nesterov),
                             bool(maximize), bool(first))  # fmt: skip
        if momentum != 0.0:
            buf[...] = new_buf
        p[...] = new_p


@np.errstate(all="ignore")
def adam_rows(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hp) -> None:
    """Adam/AdamW over every parameter; ``max_exp_avg_sqs[k]`` may be None without AMSGrad."""
    for k, (p, g) in enumerate(zip(params, grads, strict=True)):
        active, lr, beta1, beta2, eps, wd, amsgrad, decoupled, maximize, step = (
            float(v) for v in hp[k]
        )
        if not active:
            continue
        m, v, vmax = exp_avgs[k], exp_avg_sqs[k], max_exp_avg_sqs[k]
        step_size, bc2_sqrt = adam_factors(lr, beta1, beta2, step)
        new_p, new_m, new_v, new_vmax = adam(
            _f64(p), _f64(g), _f64(m), _f64(v), _f64(vmax) if amsgrad else 0.0, lr, beta1,
            beta2, eps, wd, bool(amsgrad), bool(decoupled), bool(maximize), step_size, bc2_sqrt,
        )  # fmt: skip
        m[...] = new_m
        v[...] = new_v
        if amsgrad:
            vmax[...] = new_vmax
        p[...] = new_p
