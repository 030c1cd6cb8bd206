"""Adam and AdamW (decoupled weight decay), with optional AMSGrad."""

from __future__ import annotations

import numpy as np

from .. import optim_rules
from ..backends import cpu_optim, cuda
from .optimizer import Optimizer


class Adam(Optimizer):
    """PyTorch's Adam: m = lerp(m, g, 1 - beta1); v = beta2 v + (1 - beta2) g^2;
    p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).

    ``weight_decay`` adds wd * p to the gradient (L2); AMSGrad divides by the running maximum
    of v instead of v.
    """

    _columns = optim_rules.ADAM_COLUMNS
    _decoupled = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _validate(self, group):
        super()._validate(group)
        b1, b2 = group["betas"]
        if not 0.0 <= b1 < 1.0 or not 0.0 <= b2 < 1.0:
            raise ValueError(f"invalid beta parameters: {group['betas']} (each must be in [0, 1))")
        if group["eps"] < 0:
            raise ValueError(f"invalid epsilon value: {group['eps']}")

    def _state_names(self, group=None):
        groups = self.param_groups if group is None else [group]
        names = ["exp_avg", "exp_avg_sq"]
        return names + (["max_exp_avg_sq"] if any(g["amsgrad"] for g in groups) else [])

    def _row(self, group, state):
        state["step"] = state.get("step", 0) + 1
        b1, b2 = group["betas"]
        return [
            0.0,
            group["lr"],
            b1,
            b2,
            group["eps"],
            group["weight_decay"],
            float(group["amsgrad"]),
            float(self._decoupled),
            float(group["maximize"]),
            float(state["step"]),
        ]

    def _launch_cpu(self, bucket, grads, hp):
        b = bucket.buffers
        step = cpu_optim.adam_step if isinstance(grads, np.ndarray) else cpu_optim.adam_step_list
        step(
            bucket.flat_params,
            grads,
            b["exp_avg"],
            b["exp_avg_sq"],
            b.get("max_exp_avg_sq", bucket.grads[:0]),
            bucket.offsets,
            hp,
        )

    def _launch_cuda(self, params, grads, states, hp):
        none = [None] * len(params)
        cuda.adam_step(
            params,
            grads,
            states["exp_avg"],
            states["exp_avg_sq"],
            states.get("max_exp_avg_sq", none),
            hp,
        )

    def _reference_rows(self, params, grads, states, hp):
        none = [None] * len(params)
        optim_rules.adam_rows(
            params,
            grads,
            states["exp_avg"],
            states["exp_avg_sq"],
            states.get("max_exp_avg_sq", none),
            hp,
        )


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before the Adam step."""

    _decoupled = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
