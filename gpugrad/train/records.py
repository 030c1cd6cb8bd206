"""What a run says and records about itself: its log lines and progress bar, metrics.json, the
header of best.safetensors, and the ``Result`` it reports back."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .. import __version__
from .. import distributed as dist
from ..device import xp_for
from .builders import describe_model, describe_schedule


@dataclass
class Result:
    """What a finished, interrupted or diverged run reports back."""

    status: str  # "done", "interrupted" or "diverged"
    epochs_done: int
    history: list = field(default_factory=list)
    test: dict | None = None
    best: dict | None = None
    seconds: float = 0.0
    message: str = ""


def progress_bar(trainer, total: int, desc: str):
    """A tqdm bar on a terminal (None when quiet, redirected, not rank 0, or without tqdm)."""
    if trainer.config.quiet or not sys.stderr.isatty() or not trainer.is_main:
        return None
    try:
        import tqdm
    except ImportError as e:
        if not getattr(trainer, "_said_no_tqdm", False):
            trainer.log(f"progress bar skipped: tqdm is not installed ({e})")
            trainer._said_no_tqdm = True
        return None
    return tqdm.tqdm(total=total, desc=desc, unit="batch", leave=False, file=sys.stderr)


def now() -> str:
    """The local time with its UTC offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def epoch_line(config, h: dict) -> str:
    """One epoch's line of the log."""
    width = len(str(config.epochs))
    clip = ""
    if "clip_norm" in h:  # --clip-grad-norm: the mean norm before clipping, the steps clipped
        clip = f"  grad norm {h['clip_norm']:.3g} ({h['clipped_steps']}/{h['steps']} clipped)"
    return (
        f"epoch {h['epoch']:>{width}}/{config.epochs}  "
        f"train loss {h['train_loss']:.4f} acc {h['train_acc']:6.2%}  "
        f"val loss {h['val_loss']:.4f} acc {h['val_acc']:6.2%}  "
        f"lr {h['lr']:.2e}{clip}  {h['time_s']:.2f} s ({h['samples_per_s']:,.0f} samples/s)"
    )


def describe(trainer) -> str:
    """The run in one line: device, model, data, optimizer, output folder."""
    cfg = trainer.config
    sizes = "-".join(str(s) for s in (trainer.in_features, *cfg.hidden, trainer.classes))
    val = (
        f"{len(trainer.val_set):,} val"
        if trainer.val_set is not trainer.test_set
        else "val = test split"
    )
    device = trainer.device + (f" ({trainer.device_note})" if trainer.device_note else "")
    if trainer.world > 1:
        be = dist.backend()
        device += f" x {trainer.world} ranks ({be.name if be else '?'})"
    momentum = f" momentum {cfg.momentum:g}" if cfg.momentum is not None else ""
    norm = f" {cfg.norm}norm" if cfg.norm != "none" else ""
    extras = ""
    if cfg.label_smoothing:
        extras += f", label smoothing {cfg.label_smoothing:g}"
    if cfg.clip_grad_norm is not None:
        extras += f", grad norm clipped to {cfg.clip_grad_norm:g}"
    return (
        f"device {device} | model MLP {sizes} {cfg.activation}{norm}, "
        f"{trainer.num_parameters():,} parameters | {cfg.dataset}: "
        f"{len(trainer.train_set):,} train, {val}, {len(trainer.test_set):,} test | "
        f"{cfg.optimizer} lr {cfg.lr:g}{momentum}, {describe_schedule(cfg)}{extras}, "
        f"batch {cfg.batch_size} | out {cfg.out}"
    )


def metrics(trainer, status: str, test=None, divergence=None) -> dict:
    """metrics.json: the run's status, where and when it ran, its settings and its epochs."""
    doc = {
        "status": status,
        "gpugrad": __version__,
        "started": trainer.started,
        "ended": None if status == "running" else now(),
        "machine": machine(),
        "device": trainer.device,
        "device_name": device_name(trainer.device),
        "processes": trainer.world,
        "config": trainer.config.to_json(),  # only the settings that apply to this run
        "num_parameters": trainer.num_parameters(),
        "sizes": {
            "train": len(trainer.train_set),
            "val": len(trainer.val_set) if trainer.val_set is not trainer.test_set else 0,
            "test": len(trainer.test_set),
        },
        "epochs": trainer.history,
        "best": trainer.best,
        "test": test,
        "warnings": list(trainer.warnings.values()),
    }
    if divergence is not None:
        doc["divergence"] = divergence
    return doc


def weights_header(trainer) -> dict:
    """What best.safetensors says about itself: enough to rebuild and feed the model."""
    cfg = trainer.config
    return {
        "format": "pt",  # the layout and key names of a torch.nn.Sequential
        "gpugrad.version": __version__,
        "gpugrad.model": describe_model(cfg, trainer.in_features, trainer.classes),
        "gpugrad.dataset": cfg.dataset,
        "gpugrad.features": str(trainer.in_features),
        "gpugrad.feature_range": "{} {}".format(*trainer.feature_range),
        "gpugrad.epoch": str(trainer.best["epoch"]),
        "gpugrad.val_acc": repr(trainer.best["val_acc"]),
    }


@functools.cache  # metrics.json is rewritten every epoch; the machine does not change
def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """Where a run ran, for metrics.json."""
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
    }


def device_name(device: str) -> str:
    if device == "cpu":
        return _cpu_name()
    try:
        cp = xp_for(device)
        name = cp.cuda.runtime.getDeviceProperties(int(device.split(":")[1]))["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception as e:  # a name is a nicety: never fail a run over it
        return f"unknown ({type(e).__name__})"
