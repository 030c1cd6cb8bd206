"""What a configuration builds: the device, the model, its optimizer, schedule and loss.

A model is also described as plain data (``describe_model``) for the header of
``best.safetensors``, so that ``gpugrad predict`` can rebuild it from that file alone.
"""

from __future__ import annotations

import json
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
    try:
        return parse_device(request), ""
    except RuntimeError as e:  # e.g. cuda:3 on a machine with two GPUs
        raise DeviceUnavailable(f"--device {request}: {e}") from None


def build_model(config: TrainConfig, in_features: int, classes: int):
    return nn.MLP([in_features, *config.hidden, classes], activation=config.activation)


def describe_model(config: TrainConfig, in_features: int, classes: int) -> str:
    """The model as JSON: what ``model_from_description`` needs to build it again."""
    sizes = [in_features, *config.hidden, classes]
    return json.dumps({"class": "MLP", "sizes": sizes, "activation": config.activation})


def model_from_description(text: str):
    """The (untrained) model that ``describe_model`` described; ValueError if it cannot."""
    try:
        spec = json.loads(text)
        if spec.get("class") != "MLP":
            raise ValueError(f"unknown model class {spec.get('class')!r}")
        return nn.MLP([int(s) for s in spec["sizes"]], activation=spec["activation"])
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"cannot build the model it describes ({e}): {text!r}") from None


def build_optimizer(config: TrainConfig, params):
    wd = config.weight_decay
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
