"""The configuration of a training run: every setting of ``gpugrad train`` and its checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .. import activations

ACTIVATIONS = activations.HIDDEN
LOSSES = ("cross_entropy", "multi_margin", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine")
# Settings a resumed run may change; any other change would make it a different experiment.
RESUMABLE_CHANGES = ("epochs", "device", "data_dir", "out", "plots", "quiet")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint and metrics)."""

    dataset: str = "digits"
    data_dir: str | None = None
    hidden: tuple[int, ...] = (128, 64)
    activation: str = "relu"
    loss: str = "cross_entropy"
    optimizer: str = "adam"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float | None = None  # None: the optimizer's usual default
    batch_size: int = 64
    epochs: int = 30
    scheduler: str = "cosine"
    val_fraction: float = 0.1
    device: str = "auto"
    seed: int = 0
    out: str | None = None
    plots: bool = True
    quiet: bool = False

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        for name, value, choices in (
            ("activation", self.activation, ACTIVATIONS),
            ("loss", self.loss, LOSSES),
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("scheduler", self.scheduler, SCHEDULERS),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")
        if self.batch_size < 1 or self.epochs < 0 or self.lr <= 0:
            raise ValueError("batch size must be >= 1, epochs >= 0 and lr > 0")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if self.out is None:
            self.out = str(Path("runs") / self.dataset)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d
