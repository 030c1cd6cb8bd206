"""ReduceLROnPlateau: lower the lr when a metric stops improving."""

from __future__ import annotations

import math

from ..optimizer import Optimizer
from .base import LRScheduler, _check_optimizer


class ReduceLROnPlateau(LRScheduler):
    """Multiply every lr by ``factor`` when the metric passed to ``step(metric)`` has not
    improved for more than ``patience`` epochs, then wait ``cooldown`` epochs; never below
    ``min_lr`` (one value, or one per group), and not for a change smaller than ``eps``.

    ``mode`` "min" (a loss) or "max" (an accuracy); an improvement must beat the best by
    ``threshold``, relative (``threshold_mode="rel"``) or absolute ("abs").

    >>> import gpugrad as gg
    >>> from gpugrad import optim
    >>> opt = optim.SGD([gg.zeros(1, requires_grad=True)], lr=1.0)
    >>> plateau = ReduceLROnPlateau(opt, patience=1, factor=0.5)
    >>> for val_loss in [3.0, 2.0, 2.0, 2.0, 2.0]:
    ...     plateau.step(val_loss)
    >>> plateau.get_last_lr()
    [0.5]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr=0,
        eps: float = 1e-8,
    ):
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor}")
        self.factor = factor
        self.optimizer = _check_optimizer(optimizer)
        if isinstance(min_lr, list | tuple):
            if len(min_lr) != len(optimizer.param_groups):
                raise ValueError(
                    f"ReduceLROnPlateau: {len(min_lr)} min_lr values for "
                    f"{len(optimizer.param_groups)} parameter group(s)"
                )
            self.default_min_lr = None
            self.min_lrs = list(min_lr)
        else:
            self.default_min_lr = min_lr
            self.min_lrs = [min_lr] * len(optimizer.param_groups)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = self._current()
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metrics) -> None:  # the metric of this epoch (a number or a 0-d tensor)
        current = float(metrics)
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current()

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"ReduceLROnPlateau: the optimizer now has {len(groups)} parameter groups, "
                    f"min_lr was given for {len(self.min_lrs)}; set .min_lrs to one per group"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for group, low in zip(groups, self.min_lrs, strict=True):
            old = float(group["lr"])
            new = max(old * self.factor, low)
            if old - new > self.eps:
                group["lr"] = new

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a, best) -> bool:
        if self.mode == "min":
            return (
                a < best * (1.0 - self.threshold)
                if self.threshold_mode == "rel"
                else (a < best - self.threshold)
            )
        return (
            a > best * (self.threshold + 1.0)
            if self.threshold_mode == "rel"
            else (a > best + self.threshold)
        )

    def _init_is_better(self, mode, threshold, threshold_mode) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
