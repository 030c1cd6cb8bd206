"""What a configuration builds: the device, the model, its optimizer, schedule and loss."""

from __future__ import annotations

import math

from .. import functional as F
from .. import nn, optim
from ..device import _probe_cuda, cuda_is_available, parse_device
from .config import TrainConfig


class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used (the message says why)."""


def resolve_device(request: str) -> tuple[str, str]:
    """The canonical device for ``--device`` and a note on how it was chosen."""
    request = request.strip().lower()
    if request == "auto":
        if cuda_is_available():
            return parse_device("cuda"), "auto"
        reason = _probe_cuda().split(" (")[0]  # the gist; `gpugrad info` prints the whole reason
        return "cpu", f"auto: CUDA unavailable, {reason}; using the CPU"
    if request.startswith("cuda") and not cuda_is_available():
        raise DeviceUnavailable(f"--device {request}: CUDA is unavailable: {_probe_cuda()}")
    return parse_device(request), ""


def _default_weight_decay(optimizer: str) -> float:
    return 1e-2 if optimizer == "adamw" else 0.0


def build_model(config: TrainConfig, in_features: int, classes: int):
    return nn.MLP([in_features, *config.hidden, classes], activation=config.activation)


def build_optimizer(config: TrainConfig, params):
    wd = config.weight_decay
    wd = _default_weight_decay(config.optimizer) if wd is None else wd
    if config.optimizer == "sgd":
        return optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=wd)
    if config.optimizer == "adam":
        return optim.Adam(params, lr=config.lr, weight_decay=wd)
    return optim.AdamW(params, lr=config.lr, weight_decay=wd)


def build_scheduler(config: TrainConfig, optimizer):
    if config.scheduler == "step":
        # Three decays by 10x spread over the run, whatever its length.
        step = max(1, math.ceil(config.epochs / 3))
        return optim.StepLR(optimizer, step_size=step, gamma=0.1)
    if config.scheduler == "cosine":
        return optim.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    return None


def compute_loss(name: str, logits, targets, classes: int):
    if name == "cross_entropy":
        return F.cross_entropy(logits, targets)
    if name == "multi_margin":
        return F.multi_margin_loss(logits, targets)
    return F.mse_loss(logits, F.one_hot(targets, classes))


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
