"""CPU fast paths for the optimizers: one Numba call updates every parameter of a step.

Each kernel walks a typed list of flat parameter views (updated in place, so every alias of a
parameter sees the new values) next to flat buffers that hold the gradients and the optimizer's
state for all parameters back to back, ``offsets[k]`` marking where parameter k starts. Row k of
``hp`` carries parameter k's hyperparameters (its group's, plus per-parameter flags), so
parameter groups with different settings share the one call. The rule applied to each element
is ``gpugrad.optim_rules.sgd`` / ``adam`` / ``rmsprop`` / ``adagrad``, compiled inline: the same
function the reference step runs on arrays. Arithmetic runs in float64 whatever the parameters'
dtype; the result is rounded once when stored.
"""

from __future__ import annotations

from numba import njit

from .. import optim_rules
from ..optim_rules import (  # noqa: F401  (the kernels' row layouts)
    ADAGRAD_COLUMNS,
    ADAM_COLUMNS,
    RMSPROP_COLUMNS,
    SGD_COLUMNS,
)

_sgd = njit(inline="always")(optim_rules.sgd)
_adam = njit(inline="always")(optim_rules.adam)
_adam_factors = njit(inline="always")(optim_rules.adam_factors)
_rmsprop = njit(inline="always")(optim_rules.rmsprop)
_adagrad = njit(inline="always")(optim_rules.adagrad)
_adagrad_lr = njit(inline="always")(optim_rules.adagrad_lr)

# Gradients arrive either packed in one flat buffer (``offsets[k]`` marks parameter k; cheap
# for many small parameters) or as a typed list of flat arrays (no copy; cheaper when the
# parameters are large). Each per-parameter loop is written once and inlined into both drivers.
# error_model="numpy": a division by zero gives inf/nan instead of raising, which keeps the
# check out of every iteration. The flags a rule branches on are the same for every element of
# a parameter, so the branches predict perfectly (measured within 10% of branch-free loops on
# 2M-element parameters).


@njit(cache=True, error_model="numpy", inline="always")
def _sgd_one(p, g, b, row):
    lr, momentum, dampening, wd = row[1], row[2], row[3], row[4]
    nesterov, maximize, first = row[5] != 0.0, row[6] != 0.0, row[7] != 0.0
    if momentum == 0.0:
        for i in range(p.size):
            p[i], _ = _sgd(p[i], g[i], 0.0, lr, 0.0, dampening, wd, nesterov, maximize, first)
        return
    for i in range(p.size):
        p[i], b[i] = _sgd(p[i], g[i], b[i], lr, momentum, dampening, wd, nesterov, maximize, first)


@njit(cache=True, error_model="numpy", inline="always")
def _adam_one(p, g, m, v, vmax, row):
    lr, beta1, beta2, eps, wd = row[1], row[2], row[3], row[4], row[5]
    amsgrad, decoupled, maximize = row[6] != 0.0, row[7] != 0.0, row[8] != 0.0
    step_size, bc2_sqrt = _adam_factors(lr, beta1, beta2, row[9])
    if amsgrad:
        for i in range(p.size):
            p[i], m[i], v[i], vmax[i] = _adam(
                p[i], g[i], m[i], v[i], vmax[i], lr, beta1, beta2, eps, wd, True, decoupled,
                maximize, step_size, bc2_sqrt,
            )  # fmt: skip
        return
    for i in range(p.size):
        p[i], m[i], v[i], _ = _adam(
            p[i], g[i], m[i], v[i], 0.0, lr, beta1, beta2, eps, wd, False, decoupled, maximize,
            step_size, bc2_sqrt,
        )  # fmt: skip


@njit(cache=True, error_model="numpy", inline="always")
def _rmsprop_one(p, g, sq, a, b, row):
    lr, alpha, eps, wd, momentum = row[1], row[2], row[3], row[4], row[5]
    centered, maximize = row[6] != 0.0, row[7] != 0.0
    for i in range(p.size):
        # float64 on both sides of the rule's branches, so its tuple types unify
        ai = float(a[i]) if centered else 0.0
        bi = float(b[i]) if momentum != 0.0 else 0.0
        p[i], sq[i], ai, bi = _rmsprop(p[i], g[i], float(sq[i]), ai, bi, lr, alpha, eps, wd,
                                       momentum, centered, maximize)  # fmt: skip
        if centered:
            a[i] = ai
        if momentum != 0.0:
            b[i] = bi


@njit(cache=True, error_model="numpy", inline="always")
def _adagrad_one(p, g, s, row):
    wd, initial, eps, maximize, step = row[3], row[4], row[5], row[6] != 0.0, row[7]
    clr, first = _adagrad_lr(row[1], row[2], step), step == 1.0
    for i in range(p.size):
        p[i], s[i] = _adagrad(p[i], g[i], float(s[i]), clr, wd, initial, eps, maximize, first)


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


@njit(cache=True, error_model="numpy")
def rmsprop_step(params, grads, square_avg, grad_avg, momentum_buffer, offsets, hp):
    """RMSprop for all parameters at once; ``grads`` packed flat (``offsets``). ``grad_avg`` and
    ``momentum_buffer`` may be empty when no row is centered / has momentum."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            lo, hi = offsets[k], offsets[k + 1]
            a = grad_avg[lo:hi] if grad_avg.size else grad_avg
            b = momentum_buffer[lo:hi] if momentum_buffer.size else momentum_buffer
            _rmsprop_one(params[k], grads[lo:hi], square_avg[lo:hi], a, b, hp[k])


@njit(cache=True, error_model="numpy")
def rmsprop_step_list(params, grads, square_avg, grad_avg, momentum_buffer, offsets, hp):
    """RMSprop for all parameters at once; ``grads[k]`` is parameter k's flat gradient."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            lo, hi = offsets[k], offsets[k + 1]
            a = grad_avg[lo:hi] if grad_avg.size else grad_avg
            b = momentum_buffer[lo:hi] if momentum_buffer.size else momentum_buffer
            _rmsprop_one(params[k], grads[k], square_avg[lo:hi], a, b, hp[k])


@njit(cache=True, error_model="numpy")
def adagrad_step(params, grads, sums, offsets, hp):
    """Adagrad for all parameters at once; ``grads`` packed flat (``offsets``)."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            lo, hi = offsets[k], offsets[k + 1]
            _adagrad_one(params[k], grads[lo:hi], sums[lo:hi], hp[k])


@njit(cache=True, error_model="numpy")
def adagrad_step_list(params, grads, sums, offsets, hp):
    """Adagrad for all parameters at once; ``grads[k]`` is parameter k's flat gradient."""
    for k in range(len(params)):
        if hp[k, 0] != 0.0:
            lo, hi = offsets[k], offsets[k + 1]
            _adagrad_one(params[k], grads[k], sums[lo:hi], hp[k])


# ----------------------------------------------------------------------------- gradient clipping
# nn.utils.clip_grad_norm_ / clip_grad_value_, one call per flat gradient. Gradients are new
# arrays after every backward, and a numba.typed.List of them costs 7-20 us per array to build
# (measured on the 2-core VM: 120 us for 6 arrays, 420 us for 60), against about 1.2 us per
# call here: so the caller loops, and each call is one vectorized pass over one gradient. The
# sums reassociate (fastmath "reassoc" only: NaN and inf still propagate), which lets LLVM
# vectorize them (9x faster than a strict left-to-right sum); the order is fixed by the compiled
# code, so a run repeats bit for bit.


@njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def grad_norm_partial(g, norm_type):
    """Sum of |g|^norm_type over a flat gradient (g*g for 2, |g| for 1), in float64."""
    acc = 0.0
    if norm_type == 2.0:
        for i in range(g.size):
            a = float(g[i])
            acc += a * a
    elif norm_type == 1.0:
        for i in range(g.size):
            acc += abs(float(g[i]))
    else:
        for i in range(g.size):
            acc += abs(float(g[i])) ** norm_type
    return acc


@njit(cache=True, error_model="numpy")
def grad_max_abs(g):
    """max |g| over a flat gradient, in float64; a NaN makes it NaN (as torch's max)."""
    acc = 0.0
    for i in range(g.size):
        a = abs(float(g[i]))
        if a != a:
            return a
        if a > acc:
            acc = a
    return acc


@njit(cache=True, error_model="numpy")
def grad_scale(g, coef):
    """g *= coef in place (coef of the gradient's dtype, as torch multiplies)."""
    for i in range(g.size):
        g[i] = g[i] * coef


@njit(cache=True, error_model="numpy")
def grad_clamp(g, value):
    """g = clamp(g, -value, value) in place; NaN stays NaN."""
    for i in range(g.size):
        x = g[i]
        if x < -value:
            g[i] = -value
        elif x > value:
            g[i] = value
