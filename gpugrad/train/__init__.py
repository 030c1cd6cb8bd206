"""Training an MLP classifier: the code behind ``gpugrad train``.

``config`` declares a run's settings and checks them, ``builders`` turns them into a device,
model, optimizer, schedule and loss, ``trainer`` runs the epochs (checkpoints, metrics, plots)
and ``cli`` is the command line around it.
"""

from .builders import (
    DeviceUnavailable,
    build_model,
    build_optimizer,
    build_scheduler,
    compute_loss,
    resolve_device,
)
from .cli import run_cli
from .config import TrainConfig
from .trainer import Result, Trainer

__all__ = [
    "DeviceUnavailable",
    "Result",
    "TrainConfig",
    "Trainer",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "compute_loss",
    "resolve_device",
    "run_cli",
]
