"""The optimizer cases of ``bench/gpu_bench.py`` (family "optim"): the multi-tensor steps of
``kernels/optim.cu`` and the gradient-clipping launches, each against its reference (the rows
functions of ``optim_rules`` on CuPy arrays, and what ``nn.utils`` runs for gradients no kernel
takes) and PyTorch's optimizer or ``nn.utils`` function.

Every case here updates its arguments in place (one argument set; each call updates it), so
PyTorch's twin is a ``torch_step``: built on copies of the arguments, the optimizer's state
seeded from the case's buffers and its hyperparameters read from the case's first hp row, so
one step reads and writes what the kernel does (``tests/test_gpu_bench.py`` checks it on the
CPU).
"""

from __future__ import annotations

import numpy as np
from gpu_cases import ROTATE, Case, _cuda, _rand


def optimizer_cases(xp, rng, n):
    """Every multi-tensor step over four parameters of n/16 elements each: Adam, SGD with
    momentum, RMSprop (plain, and centered with momentum: its 20 and 36 bytes per element),
    Adagrad past its first step (the accumulator is read)."""
    from gpugrad import optim_rules

    sizes = [n // 16] * 4

    def state(scale=0.1):
        return [_rand(xp, rng, s, scale=scale) for s in sizes]

    def positive(floor):  # second moments, accumulators
        return [xp.abs(a) + floor for a in state()]

    def hp(kind, **row):  # one row per parameter, in the columns of optim_rules
        return np.tile([row.get(c, 0.0) for c in optim_rules.COLUMNS[kind]], (len(sizes), 1))

    p, g, m, v = state(), state(), state(), positive(0.0)
    none = [None] * len(sizes)
    adam = hp("ADAM", active=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, step=1)
    yield Case(
        "optim",
        "adam_step, 4 parameters",
        [(p, g, m, v, none, adam)],  # in place: one set, every call updates it
        reference=lambda xp, *a: optim_rules.adam_rows(*a),
        kernel=lambda xp, *a: _cuda().adam_step(*a),
        updated=(0, 2, 3),
        host=(5,),
        torch_step=_torch_adam,
        torch_label="torch.optim.Adam(fused=True)",
    )
    sgd = hp("SGD", active=1, lr=1e-2, momentum=0.9)  # momentum, not the first step
    yield Case(
        "optim",
        "sgd_step momentum, 4 parameters",
        [(p, g, state(), sgd)],
        reference=lambda xp, *a: optim_rules.sgd_rows(*a),
        kernel=lambda xp, *a: _cuda().sgd_step(*a),
        updated=(0, 2),
        host=(3,),
        torch_step=_torch_sgd,
        torch_label="torch.optim.SGD(momentum=0.9, fused=True)",
    )
    # square_avg >= grad_avg^2 from the start, so centered RMSprop's sqrt(s - a^2) stays real
    for name, extra, args, updated in (
        ("rmsprop_step", {}, (none, none), (0, 2)),
        ("rmsprop_step centered, momentum", {"centered": 1, "momentum": 0.9},
         (state(scale=0.01), state()), (0, 2, 3, 4)),
    ):  # fmt: skip
        rms = hp("RMSPROP", active=1, lr=1e-2, alpha=0.99, eps=1e-8, **extra)
        yield Case(
            "optim",
            f"{name}, 4 parameters",
            [(p, g, positive(1e-2), *args, rms)],
            reference=lambda xp, *a: optim_rules.rmsprop_rows(*a),
            kernel=lambda xp, *a: _cuda().rmsprop_step(*a),
            updated=updated,
            host=(5,),
            torch_step=_torch_rmsprop,
            torch_label=f"torch.optim.RMSprop({_kwargs(extra)}foreach=True)",
        )
    ada = hp("ADAGRAD", active=1, lr=1e-2, eps=1e-10, step=2)
    yield Case(
        "optim",
        "adagrad_step, 4 parameters",
        [(p, g, positive(1e-1), ada)],
        reference=lambda xp, *a: optim_rules.adagrad_rows(*a),
        kernel=lambda xp, *a: _cuda().adagrad_step(*a),
        updated=(0, 2),
        host=(3,),
        torch_step=_torch_adagrad,
        torch_label="torch.optim.Adagrad(foreach=True)",
    )


def _kwargs(extra):
    return "".join(f"{k}={v:g}, " for k, v in extra.items())


def clip_cases(xp, rng, n):
    """nn.utils.clip_grad_norm_'s two launches (the total norm from grad_norm_partials, then
    grad_scale) and clip_grad_value_'s grad_clamp, over four gradients of n/16 elements each.
    The compositions are what nn.utils runs for gradients the kernels do not take."""
    from gpugrad.nn import utils

    def grads():
        return [_rand(xp, rng, n // 16, scale=0.1) for _ in range(4)]

    yield Case(
        "optim",
        "grad_norm_partials (total 2-norm), 4 gradients",
        [(grads(), 2.0) for _ in range(ROTATE)],
        reference=lambda xp, g, p: xp.sqrt(
            utils._combine(xp, [utils._reference_partial(xp, a, p) for a in g], p)
        ),
        kernel=lambda xp, g, p: xp.sqrt(_cuda().grad_norm_partial(g, p)),
        torch=lambda t, g, p: t.nn.utils.get_total_norm(g, p, foreach=True),
        torch_label="nn.utils.get_total_norm(foreach=True)",
    )
    coef = xp.asarray(np.float64(0.999))  # a clipping coefficient, on the device
    yield Case(
        "optim",
        "grad_scale, 4 gradients",
        [(grads(), coef)],
        reference=_scale_reference,
        kernel=lambda xp, g, c: _cuda().grad_scale(g, c),
        updated=(0,),
        torch_step=lambda t, g, c: lambda: t._foreach_mul_(g, c),
        torch_label="torch._foreach_mul_ (clip_grads_with_norm_'s scaling)",
    )
    yield Case(
        "optim",
        "grad_clamp, 4 gradients",
        [(grads(), 0.05)],
        reference=_clamp_reference,
        kernel=lambda xp, g, v: _cuda().grad_clamp(g, v),
        updated=(0,),
        torch_step=_torch_clamp,
        torch_label="nn.utils.clip_grad_value_(foreach=True)",
    )


def _scale_reference(xp, grads, coef):
    for a in grads:  # nn.utils._scale for a gradient no kernel takes
        a[...] = a * coef.astype(a.dtype)


def _clamp_reference(xp, grads, v):
    for a in grads:  # nn.utils.clip_grad_value_ for a gradient no kernel takes
        lim = a.dtype.type(v)
        a[...] = xp.clip(a, -lim, lim)


# PyTorch's optimizers on copies: parameters with their gradients, the state seeded from the
# case's buffers (so the step reads and writes what the kernel does), hyperparameters from row 0


def _torch_params(t, params, grads):
    out = []
    for p, g in zip(params, grads, strict=True):
        out.append(t.nn.Parameter(p))  # the copy itself, updated in place
        out[-1].grad = g
    return out


def _row(hp, kind):
    from gpugrad import optim_rules

    return dict(zip(optim_rules.COLUMNS[kind], hp[0].tolist(), strict=True))


def _seed(t, opt, params, fused, step, **buffers):
    for k, tp in enumerate(params):
        device = tp.device if fused else "cpu"  # where each kind of step keeps its count
        state = {"step": t.tensor(float(step), dtype=t.float32, device=device)}
        state.update({key: bufs[k] for key, bufs in buffers.items() if bufs[k] is not None})
        opt.state[tp] = state
    return opt.step


def _torch_adam(t, p, g, m, v, vmax, hp):
    h, params = _row(hp, "ADAM"), _torch_params(t, p, g)
    opt = t.optim.Adam(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"],
                       weight_decay=h["weight_decay"], fused=True)  # fmt: skip
    return _seed(t, opt, params, True, h["step"] - 1, exp_avg=m, exp_avg_sq=v)


def _torch_sgd(t, p, g, bufs, hp):
    h, params = _row(hp, "SGD"), _torch_params(t, p, g)
    opt = t.optim.SGD(params, lr=h["lr"], momentum=h["momentum"], fused=True)
    for tp, buf in zip(params, bufs, strict=True):
        opt.state[tp] = {"momentum_buffer": buf}
    return opt.step


def _torch_rmsprop(t, p, g, square_avgs, grad_avgs, bufs, hp):
    h, params = _row(hp, "RMSPROP"), _torch_params(t, p, g)
    opt = t.optim.RMSprop(params, lr=h["lr"], alpha=h["alpha"], eps=h["eps"],
                          momentum=h["momentum"], centered=bool(h["centered"]),
                          foreach=True)  # fmt: skip
    return _seed(t, opt, params, False, 0, square_avg=square_avgs, grad_avg=grad_avgs,
                 momentum_buffer=bufs)  # fmt: skip


def _torch_adagrad(t, p, g, sums, hp):
    h, params = _row(hp, "ADAGRAD"), _torch_params(t, p, g)
    opt = t.optim.Adagrad(params, lr=h["lr"], eps=h["eps"], foreach=True)
    return _seed(t, opt, params, False, h["step"] - 1, sum=sums)


def _torch_clamp(t, g, v):
    params = _torch_params(t, [t.empty_like(a) for a in g], g)
    return lambda: t.nn.utils.clip_grad_value_(params, v, foreach=True)
