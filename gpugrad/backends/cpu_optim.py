"""CPU fast paths for the optimizers: one Numba call updates every parameter of a step.

Each kernel walks a typed list of flat parameter views (updated in place, so every alias of a
parameter sees the new values) next to flat buffers that hold the gradients and the optimizer's
state for all parameters back to back, ``offsets[k]`` marking where parameter k starts. Row k of
``hp`` carries parameter k's hyperparameters (its group's, plus per-parameter flags), so
parameter groups with different settings share the one call. Arithmetic runs in float64 whatever
the parameters' dtype; the result is rounded once when stored.

The update rules are PyTorch's (``torch.optim.SGD``, ``Adam``, ``AdamW``); the NumPy references
in ``optim/sgd.py`` and ``optim/adam.py`` spell out the same rules and are tested against these.
"""

from __future__ import annotations

import math

from numba import njit

# Columns of the hyperparameter table for each kernel.
SGD_COLUMNS = (
    "active",
    "lr",
    "momentum",
    "dampening",
    "weight_decay",
    "nesterov",
    "maximize",
    "first",
)
ADAM_COLUMNS = (
    "active",
    "lr",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "amsgrad",
    "decoupled",
    "maximize",
    "step",
)


# Gradients arrive either packed in one flat buffer (``offsets[k]`` marks parameter k; cheap
# for many small parameters) or as a typed list of flat arrays (no copy; cheaper when the
# parameters are large). Each rule is written once, for one parameter, and inlined into both
# drivers. error_model="numpy": a division by zero gives inf/nan instead of raising, which is
# what lets LLVM vectorize the loops (4x on AVX2: the check otherwise sits in every iteration).


@njit(cache=True, error_model="numpy", inline="always")
def _sgd_one(p, g, b, row):
    """p -= lr * (momentum buffer or gradient), PyTorch's SGD, for one flat parameter."""
    lr, momentum, dampening, wd = row[1], row[2], row[3], row[4]
    nesterov, first = row[5] != 0.0, row[7] != 0.0
    sign = -1.0 if row[6] != 0.0 else 1.0  # maximize
    # Each case gets its own branch-free loop so that LLVM can vectorize it. A zero weight
    # decay still adds wd * p = 0, which leaves every finite gradient unchanged.
    if momentum == 0.0:
        for i in range(p.size):
            p[i] -= lr * (sign * g[i] + wd * p[i])
        return
    # The first step seeds the buffer with the gradient itself, undamped.
    keep = 0.0 if first else momentum
    damp = 1.0 if first else 1.0 - dampening
    if nesterov:
        for i in range(p.size):
            gi = sign * g[i] + wd * p[i]
            bi = keep * b[i] + damp * gi
            b[i] = bi
            p[i] -= lr * (gi + momentum * bi)
    else:
        for i in range(p.size):
            bi = keep * b[i] + damp * (sign * g[i] + wd * p[i])
            b[i] = bi
            p[i] -= lr * bi


@njit(cache=True, error_model="numpy", inline="always")
def _adam_one(p, g, m, v, vmax, row):
    """PyTorch's Adam (decoupled=0) and AdamW (decoupled=1) for one flat parameter."""
    lr, beta1, beta2, eps, wd = row[1], row[2], row[3], row[4], row[5]
    amsgrad, decoupled, step = row[6] != 0.0, row[7] != 0.0, row[9]
    sign = -1.0 if row[8] != 0.0 else 1.0  # maximize
    step_size = lr / (1.0 - beta1**step)
    bc2_sqrt = math.sqrt(1.0 - beta2**step)
    # Decoupled decay scales p (by exactly 1.0 when off); L2 decay adds wd * p to g (exactly
    # 0 when off), so one branch-free loop serves every setting but AMSGrad.
    shrink = 1.0 - lr * wd if decoupled else 1.0
    l2 = 0.0 if decoupled else wd
    if amsgrad:
        for i in range(p.size):
            x = p[i] * shrink
            gi = sign * g[i] + l2 * x
            mi = m[i] + (1.0 - beta1) * (gi - m[i])  # torch's lerp for weight < 0.5
            vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
            m[i] = mi
            v[i] = vi
            vmax[i] = max(vmax[i], vi)
            p[i] = x - step_size * mi / (math.sqrt(vmax[i]) / bc2_sqrt + eps)
    else:
        for i in range(p.size):
            x = p[i] * shrink
            gi = sign * g[i] + l2 * x
            mi = m[i] + (1.0 - beta1) * (gi - m[i])
            vi = beta2 * v[i] + (1.0 - beta2) * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] = x - step_size * mi / (math.sqrt(vi) / bc2_sqrt + eps)


@njit(cache=True, error_model="numpy")
def sgd_step(params, grads, bufs, offsets, hp):
    """SGD for all parameters at once; ``grads`` packed flat (``offsets``)."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            lo, hi = offsets[k], offsets[k + 1]
            b = bufs[lo:hi] if bufs.size else bufs
            _sgd_one(params[k], grads[lo:hi], b, hp[k])


@njit(cache=True, error_model="numpy")
def sgd_step_list(params, grads, bufs, offsets, hp):
    """SGD for all parameters at once; ``grads[k]`` is parameter k's flat gradient."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            b = bufs[offsets[k] : offsets[k + 1]] if bufs.size else bufs
            _sgd_one(params[k], grads[k], b, hp[k])


@njit(cache=True, error_model="numpy")
def adam_step(params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, offsets, hp):
    """Adam/AdamW for all parameters at once; ``grads`` packed flat (``offsets``)."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            lo, hi = offsets[k], offsets[k + 1]
            vmax = max_exp_avg_sq[lo:hi] if max_exp_avg_sq.size else max_exp_avg_sq
            _adam_one(params[k], grads[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi], vmax, hp[k])


@njit(cache=True, error_model="numpy")
def adam_step_list(params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, offsets, hp):
    """Adam/AdamW for all parameters at once; ``grads[k]`` is parameter k's flat gradient."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            lo, hi = offsets[k], offsets[k + 1]
            vmax = max_exp_avg_sq[lo:hi] if max_exp_avg_sq.size else max_exp_avg_sq
            _adam_one(params[k], grads[k], exp_avg[lo:hi], exp_avg_sq[lo:hi], vmax, hp[k])
