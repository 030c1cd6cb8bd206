"""RMSprop (optionally centered, with momentum) and Adagrad, with PyTorch's semantics."""

from __future__ import annotations

import numpy as np

from .. import optim_rules
from ..backends import cpu_optim, cuda
from .optimizer import Optimizer


def _check_nonnegative(name, group, keys):
    for key in keys:
        if not group[key] >= 0.0:  # also catches NaN
            raise ValueError(f"{name}: invalid {key} value {group[key]} (must be >= 0)")


class RMSprop(Optimizer):
    """PyTorch's RMSprop: s = alpha s + (1 - alpha) g^2; p -= lr g / (sqrt(s) + eps).

    ``centered`` divides by sqrt(s - a^2) + eps instead, a being the running mean of g (an
    estimate of the gradient's variance); ``momentum`` accumulates b = momentum b + g / denom
    and steps by lr b; ``weight_decay`` adds wd * p to the gradient.

    >>> import gpugrad as gg
    >>> w = gg.tensor([1.0, -2.0], dtype=gg.float64, requires_grad=True)
    >>> w.grad = gg.tensor([0.5, 0.5], dtype=gg.float64)
    >>> RMSprop([w], lr=0.01).step()
    >>> [round(v, 6) for v in w.tolist()]  # first step: g / sqrt(0.01 g^2) = 10 sign(g)
    [0.9, -2.1]
    """

    _columns = optim_rules.RMSPROP_COLUMNS

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _validate(self, group):
        super()._validate(group)
        _check_nonnegative("RMSprop", group, ("alpha", "eps", "momentum"))

    def _state_names(self, group=None):
        groups = self.param_groups if group is None else [group]
        names = ["square_avg"]
        if any(g["momentum"] != 0 for g in groups):
            names.append("momentum_buffer")
        if any(g["centered"] for g in groups):
            names.append("grad_avg")
        return names

    def _row(self, group, state):
        state["step"] = state.get("step", 0) + 1  # kept for state dicts, as PyTorch does
        return [
            0.0,
            group["lr"],
            group["alpha"],
            group["eps"],
            group["weight_decay"],
            group["momentum"],
            float(group["centered"]),
            float(group["maximize"]),
        ]

    def _launch_cpu(self, bucket, grads, hp):
        b, empty = bucket.buffers, bucket.grads[:0]
        listed = not isinstance(grads, np.ndarray)
        step = cpu_optim.rmsprop_step_list if listed else cpu_optim.rmsprop_step
        step(
            bucket.flat_params,
            grads,
            b["square_avg"],
            b.get("grad_avg", empty),
            b.get("momentum_buffer", empty),
            bucket.offsets,
            hp,
        )

    def _launch_cuda(self, params, grads, states, hp):
        none = [None] * len(params)
        cuda.rmsprop_step(
            params,
            grads,
            states["square_avg"],
            states.get("grad_avg", none),
            states.get("momentum_buffer", none),
            hp,
        )

    def _reference_rows(self, params, grads, states, hp):
        none = [None] * len(params)
        optim_rules.rmsprop_rows(
            params,
            grads,
            states["square_avg"],
            states.get("grad_avg", none),
            states.get("momentum_buffer", none),
            hp,
        )


class Adagrad(Optimizer):
    """PyTorch's Adagrad: sum += g^2 (starting at ``initial_accumulator_value``);
    p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps) at step t.

    ``weight_decay`` adds wd * p to the gradient. Each group's own
    ``initial_accumulator_value`` seeds its accumulators (PyTorch uses the constructor's value
    for every group).

    >>> import gpugrad as gg
    >>> w = gg.tensor([1.0, -2.0], dtype=gg.float64, requires_grad=True)
    >>> w.grad = gg.tensor([0.5, 0.5], dtype=gg.float64)
    >>> Adagrad([w], lr=0.1).step()
    >>> [round(v, 6) for v in w.tolist()]  # first step: lr g / |g| = 0.1 sign(g)
    [0.9, -2.1]
    """

    _columns = optim_rules.ADAGRAD_COLUMNS

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _validate(self, group):
        super()._validate(group)
        _check_nonnegative("Adagrad", group, ("lr_decay", "initial_accumulator_value", "eps"))

    def _state_names(self, group=None):
        return ["sum"]

    def _row(self, group, state):
        state["step"] = state.get("step", 0) + 1  # step 1 seeds the accumulator
        return [
            0.0,
            group["lr"],
            group["lr_decay"],
            group["weight_decay"],
            group["initial_accumulator_value"],
            group["eps"],
            float(group["maximize"]),
            float(state["step"]),
        ]

    def _launch_cpu(self, bucket, grads, hp):
        listed = not isinstance(grads, np.ndarray)
        step = cpu_optim.adagrad_step_list if listed else cpu_optim.adagrad_step
        step(bucket.flat_params, grads, bucket.buffers["sum"], bucket.offsets, hp)

    def _launch_cuda(self, params, grads, states, hp):
        cuda.adagrad_step(params, grads, states["sum"], hp)

    def _reference_rows(self, params, grads, states, hp):
        optim_rules.adagrad_rows(params, grads, states["sum"], hp)
