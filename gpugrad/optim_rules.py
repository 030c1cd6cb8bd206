"""The update rules of gpugrad's optimizers, written once for every implementation.

``sgd``, ``adam``, ``rmsprop`` and ``adagrad`` are PyTorch's rules (``torch.optim.SGD``,
``Adam``, ``AdamW``, ``RMSprop``, ``Adagrad``) for one value, on float64 numbers. The same
functions serve three places:

- the reference step (``optim/``), which calls them on whole float64 arrays (NumPy or CuPy);
- the Numba kernels (``backends/cpu_optim.py``), which compile them inline for one element;
- the CUDA kernels (``kernels/optim.cu``) follow them line by line and read the hyperparameter
  rows by the column indices that ``cuda_defines()`` prepends to their source.

Each optimizer's hyperparameters travel as one float64 row per parameter, in the column order
of its ``*_COLUMNS`` table (``COLUMNS`` lists them); column 0 ("active") is 0 for a parameter
without a gradient this step. Terms that are off are skipped, never multiplied by zero: a
parameter at +inf with weight_decay 0 stays inf instead of becoming 0 * inf = nan. This module
imports only NumPy, so every layer may use it.
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
RMSPROP_COLUMNS = (
    "active",
    "lr",
    "alpha",
    "eps",
    "weight_decay",
    "momentum",
    "centered",
    "maximize",
)
ADAGRAD_COLUMNS = (
    "active",
    "lr",
    "lr_decay",
    "weight_decay",
    "initial_accumulator_value",
    "eps",
    "maximize",
    "step",  # 1 on the step that creates the accumulator (it starts at the initial value)
)
# The tables the CUDA kernels read, by the prefix of their #define names.
COLUMNS = {
    "SGD": SGD_COLUMNS,
    "ADAM": ADAM_COLUMNS,
    "RMSPROP": RMSPROP_COLUMNS,
    "ADAGRAD": ADAGRAD_COLUMNS,
}


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

    AdamW: p *= 1 - lr * wd first; Adam: g += wd * p. Then m = lerp(m, g, 1 - beta1) (torch's
    two-sided form), v = beta2 v + (1 - beta2) g^2, v' = max(vmax, v) with AMSGrad (NaN propagates),
    p -= step_size * m / (sqrt(v') / bc2_sqrt + eps).
    """
    d = -g if maximize else g
    if decoupled:
        if weight_decay != 0.0:
            p = p * (1.0 - lr * weight_decay)
    elif weight_decay != 0.0:
        d = d + weight_decay * p
    w = 1.0 - beta1  # torch's lerp(m, d, w): two forms, the more accurate one for each w
    m = m + w * (d - m) if w < 0.5 else d - (d - m) * (1.0 - w)
    v = beta2 * v + (1.0 - beta2) * d * d
    if amsgrad:
        vmax = np.maximum(vmax, v)
        denom = np.sqrt(vmax) / bc2_sqrt + eps
    else:
        denom = np.sqrt(v) / bc2_sqrt + eps
    return p - step_size * m / denom, m, v, vmax


def rmsprop(p, g, square_avg, grad_avg, buf, lr, alpha, eps, weight_decay, momentum, centered,
            maximize):  # fmt: skip
    """One RMSprop step; returns (p, square_avg, grad_avg, momentum buffer).

    d = g (+ wd * p); s = alpha s + (1 - alpha) d^2; centered: a = lerp(a, d, 1 - alpha) and
    denom = sqrt(s - a^2) + eps, else sqrt(s) + eps; with momentum b = momentum b + d / denom
    and p -= lr b, without p -= lr d / denom. Every buffer starts at 0.
    """
    d = -g if maximize else g
    if weight_decay != 0.0:
        d = d + weight_decay * p
    square_avg = alpha * square_avg + (1.0 - alpha) * d * d
    if centered:
        w = 1.0 - alpha
        grad_avg = grad_avg + w * (d - grad_avg) if w < 0.5 else d - (d - grad_avg) * (1.0 - w)
        denom = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        denom = np.sqrt(square_avg) + eps
    if momentum != 0.0:
        buf = momentum * buf + d / denom
        return p - lr * buf, square_avg, grad_avg, buf
    return p - lr * (d / denom), square_avg, grad_avg, buf


def adagrad_lr(lr, lr_decay, step):
    """Adagrad's decayed step size at step number ``step`` (1, 2, ...), once per parameter."""
    return lr / (1.0 + (step - 1.0) * lr_decay)


def adagrad(p, g, state_sum, clr, weight_decay, initial_accumulator_value, eps, maximize, first):
    """One Adagrad step with step size ``clr`` (``adagrad_lr``); returns (p, sum).

    d = g (+ wd * p); sum += d^2, where sum starts at initial_accumulator_value (``first``);
    p -= clr d / (sqrt(sum) + eps).
    """
    d = -g if maximize else g
    if weight_decay != 0.0:
        d = d + weight_decay * p
    state_sum = (initial_accumulator_value if first else state_sum) + d * d
    return p - clr * (d / (np.sqrt(state_sum) + eps)), state_sum


def cuda_defines() -> str:
    """``#define GG_SGD_LR 1``-style column indices for kernels/optim.cu."""
    lines = []
    for prefix, columns in COLUMNS.items():
        lines += [f"#define GG_{prefix}_{c.upper()} {i}\n" for i, c in enumerate(columns)]
        lines.append(f"#define GG_{prefix}_COLUMNS {len(columns)}\n")
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


@np.errstate(all="ignore")
def rmsprop_rows(params, grads, square_avgs, grad_avgs, bufs, hp) -> None:
    """RMSprop over every parameter; ``grad_avgs[k]`` / ``bufs[k]`` may be None where row k is
    not centered / has no momentum."""
    for k, (p, g) in enumerate(zip(params, grads, strict=True)):
        active, lr, alpha, eps, wd, momentum, centered, maximize = (float(v) for v in hp[k])
        if not active:
            continue
        a, b = grad_avgs[k], bufs[k]
        new_p, new_s, new_a, new_b = rmsprop(
            _f64(p), _f64(g), _f64(square_avgs[k]), _f64(a) if centered else 0.0,
            _f64(b) if momentum != 0.0 else 0.0, lr, alpha, eps, wd, momentum, bool(centered),
            bool(maximize),
        )  # fmt: skip
        square_avgs[k][...] = new_s
        if centered:
            a[...] = new_a
        if momentum != 0.0:
            b[...] = new_b
        p[...] = new_p


@np.errstate(all="ignore")
def adagrad_rows(params, grads, sums, hp) -> None:
    """Adagrad over every parameter."""
    for k, (p, g) in enumerate(zip(params, grads, strict=True)):
        active, lr, lr_decay, wd, initial, eps, maximize, step = (float(v) for v in hp[k])
        if not active:
            continue
        first = step == 1.0
        new_p, new_sum = adagrad(
            _f64(p), _f64(g), 0.0 if first else _f64(sums[k]), adagrad_lr(lr, lr_decay, step),
            wd, initial, eps, bool(maximize), first,
        )  # fmt: skip
        sums[k][...] = new_sum
        p[...] = new_p
