"""What a configuration builds: the device, the model, its optimizer, schedule and loss.

A model is also described as plain data (``describe_model``) for the header of
``best.safetensors``, so that ``gpugrad predict`` can rebuild it from that file alone.

Schedules: ``step`` and ``cosine`` are stepped once an epoch, ``onecycle`` after every
optimizer step, ``plateau`` once an epoch with the validation loss (``PER_BATCH``,
``ON_METRIC``). A warm-up (``--warmup-epochs N``) is PyTorch's recipe,
``SequentialLR([LinearLR(start_factor=1/25, total_iters=N), main], milestones=[N])``, with the
main schedule planned over the epochs after it; OneCycleLR has a warm-up of its own, which
then lasts N epochs (``pct_start = N / epochs``) instead of 0.3 of the run; and since
SequentialLR cannot hold a ReduceLROnPlateau, ``WarmupThenPlateau`` chains those two.
"""

from __future__ import annotations

import json
import math

from .. import functional as F
from .. import nn, optim
from ..device import _probe_cuda, cuda_is_available, parse_device
from .config import DEFAULT_MOMENTUM, ConfigError, TrainConfig

PER_BATCH = ("onecycle",)  # schedules stepped after every optimizer step
ON_METRIC = ("plateau",)  # schedules stepped with the epoch's validation loss
WARMUP_START = 1 / 25  # a warm-up starts at lr / 25, where OneCycleLR starts by default
# ReduceLROnPlateau: PyTorch's factor; a patience of 5 epochs rather than PyTorch's 10, a third
# of the default 30-epoch run.
PLATEAU = {"mode": "min", "factor": 0.1, "patience": 5}


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


def _norm(config: TrainConfig) -> str | None:
    return None if config.norm == "none" else config.norm


def build_model(config: TrainConfig, in_features: int, classes: int):
    sizes = [in_features, *config.hidden, classes]
    return nn.MLP(sizes, activation=config.activation, norm=_norm(config))


def check_batches(config: TrainConfig, train_samples: int, world: int) -> None:
    """Refuse batch norm where a batch (one rank's share of it) would hold a single sample:
    BatchNorm1d cannot estimate a variance from one value, so the run would stop there."""
    if config.norm != "batch":
        return
    full, rest = divmod(train_samples, config.batch_size)
    sizes = ([config.batch_size] if full else []) + ([rest] if rest >= world else [])
    smallest = min(sizes, default=2 * world) // world  # the smallest shard of any batch
    if smallest < 2:
        where = f" on one of {world} ranks" if world > 1 else ""
        raise ConfigError(
            f"--norm batch: with --batch-size {config.batch_size}, a batch of the "
            f"{train_samples:,} training samples holds {smallest} sample{where}, and batch norm "
            "needs at least 2 to estimate a variance; choose another --batch-size, or --norm "
            "layer"
        )


def describe_model(config: TrainConfig, in_features: int, classes: int) -> str:
    """The model as JSON: what ``model_from_description`` needs to build it again."""
    sizes = [in_features, *config.hidden, classes]
    spec = {"class": "MLP", "sizes": sizes, "activation": config.activation}
    if _norm(config):  # left out when none, as files written before --norm have it
        spec["norm"] = config.norm
    return json.dumps(spec)


def model_from_description(text: str):
    """The (untrained) model that ``describe_model`` described; ValueError if it cannot."""
    try:
        spec = json.loads(text)
        if spec.get("class") != "MLP":
            raise ValueError(f"unknown model class {spec.get('class')!r}")
        sizes = [int(s) for s in spec["sizes"]]
        return nn.MLP(sizes, activation=spec["activation"], norm=spec.get("norm"))
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"cannot build the model it describes ({e}): {text!r}") from None


def build_optimizer(config: TrainConfig, params):
    wd = config.weight_decay
    if config.optimizer == "sgd":
        # None with onecycle, which sets the momentum from the first step on (0.95 down to 0.85)
        momentum = DEFAULT_MOMENTUM if config.momentum is None else config.momentum
        return optim.SGD(params, lr=config.lr, momentum=momentum, weight_decay=wd)
    if config.optimizer == "adam":
        return optim.Adam(params, lr=config.lr, weight_decay=wd)
    return optim.AdamW(params, lr=config.lr, weight_decay=wd)


class WarmupThenPlateau:
    """A LinearLR warm-up of ``warmup.total_iters`` epochs, then ReduceLROnPlateau, which sees
    the metrics of the epochs after the warm-up only: ``step(metric)`` once an epoch."""

    def __init__(self, warmup: optim.LinearLR, plateau: optim.ReduceLROnPlateau):
        self.warmup, self.plateau = warmup, plateau

    def step(self, metric) -> None:
        if self.warmup.last_epoch < self.warmup.total_iters:
            self.warmup.step()
        else:
            self.plateau.step(metric)

    def state_dict(self) -> dict:
        return {"warmup": self.warmup.state_dict(), "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])


def build_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int = 1):
    """The run's learning-rate schedule (None for ``--scheduler none`` without a warm-up);
    ``steps_per_epoch`` (the batches of an epoch) plans OneCycleLR."""
    sched, warmup, epochs = config.scheduler, config.warmup_epochs, config.epochs
    if sched == "onecycle":
        pct = 0.3 if warmup is None else warmup / epochs
        return optim.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            pct_start=pct,
        )
    first = None
    if warmup is not None:
        first = optim.LinearLR(optimizer, start_factor=WARMUP_START, total_iters=warmup)
        epochs -= warmup  # the main schedule is planned over the epochs after the warm-up
    if sched == "plateau":
        plateau = optim.ReduceLROnPlateau(optimizer, **PLATEAU)
        return plateau if first is None else WarmupThenPlateau(first, plateau)
    main = None
    if sched == "step":
        # Three decays by 10x spread over the run, whatever its length.
        main = optim.StepLR(optimizer, step_size=max(1, math.ceil(epochs / 3)), gamma=0.1)
    elif sched == "cosine":
        main = optim.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if first is None or main is None:
        return first or main
    return optim.SequentialLR(optimizer, [first, main], milestones=[warmup])


def check_resumed_schedule(config: TrainConfig, saved: dict | None, steps_per_epoch: int) -> None:
    """Refuse to resume a OneCycleLR planned over another number of steps: with a different
    number of processes an epoch can lose its last, smallest batch (``DistributedLoader``
    drops one with fewer samples than ranks), and the schedule would end early or overrun."""
    if config.scheduler != "onecycle" or not saved or "total_steps" not in saved:
        return
    if saved["total_steps"] != config.epochs * steps_per_epoch:
        raise ConfigError(
            f"--resume: the run's onecycle schedule is planned over {saved['total_steps']} "
            f"steps, but {config.epochs} epochs of {steps_per_epoch} batches are "
            f"{config.epochs * steps_per_epoch} with this number of processes; resume with the "
            "number of processes that started the run"
        )


def describe_schedule(config: TrainConfig) -> str:
    """The schedule in a few words, for the run's first line."""
    text = f"{config.scheduler} schedule"
    if config.scheduler == "onecycle":
        peak = "0.3 of the run" if config.warmup_epochs is None else f"{config.warmup_epochs}"
        if config.warmup_epochs is not None:
            peak += " epoch" + ("s" if config.warmup_epochs != 1 else "")
        momentum = "beta1" if config.optimizer != "sgd" else "momentum"
        return f"{text} (lr peaks after {peak}, {momentum} cycled 0.95-0.85)"
    if config.warmup_epochs is not None:
        n = config.warmup_epochs
        text += f" after {n} warm-up epoch" + ("s" if n != 1 else "")
    if config.scheduler == "plateau":
        metric = "val" if config.val_fraction > 0 else "train"  # never the test split's
        text += f" (lr x{PLATEAU['factor']:g} when the {metric} loss stalls for more than "
        text += f"{PLATEAU['patience']} epochs)"
    return text


def compute_loss(name: str, logits, targets, classes: int, label_smoothing: float = 0.0):
    if name == "cross_entropy":
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing or 0.0)
    if name == "multi_margin":
        return F.multi_margin_loss(logits, targets)
    return F.mse_loss(logits, F.one_hot(targets, classes))


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
