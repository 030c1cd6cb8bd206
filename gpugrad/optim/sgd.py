"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

import numpy as np

from .. import optim_rules
from ..backends import cpu_optim, cuda
from .optimizer import Optimizer


class SGD(Optimizer):
    """PyTorch's SGD: g = grad + wd * p; b = g on the first step, else
    momentum * b + (1 - dampening) * g; p -= lr * (g + momentum * b if nesterov else b).

    >>> import gpugrad as gg
    >>> w = gg.tensor([1.0, 2.0], requires_grad=True)
    >>> (w * w).sum().backward()
    >>> SGD([w], lr=0.1).step()
    >>> w.tolist()
    [0.800000011920929, 1.600000023841858]
    """

    _columns = optim_rules.SGD_COLUMNS

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _validate(self, group):
        super()._validate(group)
        if group["momentum"] < 0:
            raise ValueError(f"invalid momentum value: {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self, group=None):
        groups = self.param_groups if group is None else [group]
        return ["momentum_buffer"] if any(g["momentum"] != 0 for g in groups) else []

    def _row(self, group, state):
        return [
            0.0,
            group["lr"],
            group["momentum"],
            group["dampening"],
            group["weight_decay"],
            float(group["nesterov"]),
            float(group["maximize"]),
            float("momentum_buffer" not in state),
        ]

    def _launch_cpu(self, bucket, grads, hp):
        bufs = bucket.buffers.get("momentum_buffer", bucket.grads[:0])
        step = cpu_optim.sgd_step if isinstance(grads, np.ndarray) else cpu_optim.sgd_step_list
        step(bucket.flat_params, grads, bufs, bucket.offsets, hp)

    def _launch_cuda(self, params, grads, states, hp):
        bufs = states.get("momentum_buffer", [None] * len(params))
        cuda.sgd_step(params, grads, bufs, hp)

    def _reference_rows(self, params, grads, states, hp):
        optim_rules.sgd_rows(params, grads, states.get("momentum_buffer", [None] * len(params)), hp)
