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


@njit(cache=True, error_model="numpy")
def sgd_step(params, grads, bufs, offsets, hp):
    """p -= lr * (momentum buffer or gradient), PyTorch's SGD, for all parameters at once."""
    for k in range(len(params)):
        row = hp[k]
        if row[0] == 0.0:
            continue
        lr, momentum, dampening, wd = row[1], row[2], row[3], row[4]
        nesterov, first = row[5] != 0.0, row[7] != 0.0
        sign = -1.0 if row[6] != 0.0 else 1.0  # maximize
        p = params[k]
        g = grads[offsets[k] : offsets[k + 1]]
        # Each case gets its own branch-free loop so that LLVM can vectorize it. A zero weight
        # decay still adds wd * p = 0, which leaves every finite gradient unchanged.
        if momentum == 0.0:
            for i in range(p.size):
                p[i] -= lr * (sign * g[i] + wd * p[i])
            continue
        b = bufs[offsets[k] : offsets[k + 1]]
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


# error_model="numpy": a division by zero gives inf/nan instead of raising, which is what lets
# LLVM vectorize the loop (4x on AVX2: the zero-division check otherwise sits in every iteration).
@njit(cache=True, error_model="numpy")
def adam_step(params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq, offsets, hp):
    """PyTorch's Adam (decoupled=0) and AdamW (decoupled=1) for all parameters at once."""
    for k in range(len(params)):
        row = hp[k]
        if row[0] == 0.0:
            continue
        lr, beta1, beta2, eps, wd = row[1], row[2], row[3], row[4], row[5]
        amsgrad, decoupled, step = row[6] != 0.0, row[7] != 0.0, row[9]
        sign = -1.0 if row[8] != 0.0 else 1.0  # maximize
        step_size = lr / (1.0 - beta1**step)
        bc2_sqrt = math.sqrt(1.0 - beta2**step)
        # Decoupled decay scales p (by exactly 1.0 when off); L2 decay adds wd * p to g (exactly
        # 0 when off), so one branch-free loop serves every setting but AMSGrad.
        shrink = 1.0 - lr * wd if decoupled else 1.0
        l2 = 0.0 if decoupled else wd
        p = params[k]
        lo, hi = offsets[k], offsets[k + 1]
        g, m, v = grads[lo:hi], exp_avg[lo:hi], exp_avg_sq[lo:hi]
        if amsgrad:
            vmax = max_exp_avg_sq[lo:hi]
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
