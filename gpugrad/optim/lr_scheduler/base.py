"""The base of every scheduler: base lrs, the epoch counter, the step, state dicts."""

from __future__ import annotations

from ..optimizer import Optimizer


def _check_optimizer(optimizer) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
    return optimizer


def _per_group(name, optimizer, value) -> list:
    """One value per parameter group: a list or tuple as given (checked), else repeated."""
    if isinstance(value, list | tuple):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(
                f"{name} has {len(value)} values, the optimizer has "
                f"{len(optimizer.param_groups)} parameter group(s); give one per group"
            )
        return list(value)
    return [value] * len(optimizer.param_groups)


class LRScheduler:
    """Base class: keeps ``base_lrs``, ``last_epoch`` and the last lrs it set."""

    _is_initial = False  # True during the constructor's step

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        self.optimizer = _check_optimizer(optimizer)
        for i, group in enumerate(optimizer.param_groups):
            if last_epoch == -1:
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(
                    f"param 'initial_lr' is not specified in param_groups[{i}] when resuming a "
                    "scheduler with last_epoch >= 0; load the optimizer's state first"
                )
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The lrs for ``last_epoch`` (already advanced); subclasses implement it."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and write the new lr into every parameter group."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch: int | None = None) -> None:
        """Advance one epoch, or jump to ``epoch`` (the closed form where there is one)."""
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed = getattr(self, "_get_closed_form_lr", None)
            values = closed() if closed is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The lrs set by the latest ``step()`` (one per parameter group)."""
        return self._last_lr

    def state_dict(self) -> dict:
        """Everything but the optimizer (save the optimizer's own state dict next to it)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(state_dict)

    def _current(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]
