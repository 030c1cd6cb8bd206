"""What stops a run early: Ctrl-C (``StopFlag``), a loss or a weight that is no longer a number
(``LossWatch``, ``check_parameters``: they raise ``Diverged``); and what warns that it may."""

from __future__ import annotations

import math
import signal
import threading

# An epoch whose mean training loss exceeds the untrained model's this many times is diverging.
GROWTH_WARNING = 10.0


class StopFlag:
    """The first Ctrl-C asks the loop to stop at the next batch boundary (so parameters and
    optimizer state are never half-updated when saved); a second one stops at once."""

    def __init__(self, log, deferred: bool = False):
        self.requested = False
        # With several ranks a request only becomes ``requested`` when the ranks agree on it
        # (Trainer._agree), so that all of them stop after the same batch.
        self.deferred = deferred
        self.pending = False
        self._log = log
        self._previous = None

    def request(self) -> None:
        if self.deferred:
            self.pending = True
        else:
            self.requested = True

    def _handler(self, signum, frame):
        if self.requested or self.pending:
            raise KeyboardInterrupt
        self.request()
        self._log("\ninterrupt: stopping after this batch (Ctrl-C again to stop at once)")

    def __enter__(self):
        # Signal handlers can only be installed from the main thread; elsewhere, Ctrl-C
        # arrives as KeyboardInterrupt and the last end-of-epoch checkpoint stands.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Diverged(Exception):
    """The loss became NaN or infinite; nothing computed after that point may be saved."""

    def __init__(self, epoch: int, batch: int | None, value: float, last_finite, what: str):
        self.epoch = epoch  # 0-based
        self.batch = batch  # 0-based within the epoch; None for the validation loss
        self.value = value
        self.last_finite = last_finite  # the last finite training loss, or None
        self.what = what
        super().__init__(f"{what} became {value}")

    def to_json(self) -> dict:
        return {
            "epoch": self.epoch + 1,
            "batch": None if self.batch is None else self.batch + 1,
            "what": self.what,
            "value": self.value,
            "last_finite_loss": self.last_finite,
        }


class LossWatch:
    """Checks each batch's training loss for NaN and infinity, one batch late.

    Reading a loss off a GPU waits for the GPU to finish it. Checking batch b's loss after
    batch b+1's forward is queued keeps the GPU busy during that wait, at the price of one more
    step, which is never saved: the run stops and keeps the last checkpoint.
    """

    def __init__(self, initial: float | None = None):
        self.pending = None  # (epoch, batch, loss array) not yet checked
        self.last = None  # (epoch, batch) last checked
        self.last_finite: float | None = None
        self.bad: tuple | None = None  # (epoch, batch, value) of the first non-finite loss
        self.initial = initial  # the first loss of the run: the untrained model's

    def push(self, epoch: int, batch: int, loss) -> None:
        self.pending = (epoch, batch, loss)

    def check(self) -> bool:
        """Check the pending loss; True once any loss was not finite."""
        if self.pending is not None:
            epoch, batch, loss = self.pending
            self.pending = None
            value = float(loss)
            self.last = (epoch, batch)
            if math.isfinite(value):
                self.last_finite = value
                if self.initial is None:
                    self.initial = value
            elif self.bad is None:
                self.bad = (epoch, batch, value)
        return self.bad is not None

    def diverged(self) -> Diverged:
        """The exception for the first bad loss; with several ranks another rank may have
        seen it, and then it names the batch this rank checked last."""
        epoch, batch, value = self.bad or (*(self.last or (0, 0)), math.nan)
        return Diverged(epoch, batch, value, self.last_finite, "the training loss")


def check_parameters(model, xp, epoch: int, last_finite) -> None:
    """Raise Diverged if a parameter is NaN or infinite. A finite loss does not prove the
    weights are (an activation that maps NaN to 0 hides them); this runs before every save,
    once an epoch, so its cost does not matter."""
    for name, p in model.named_parameters():
        finite = xp.isfinite(p.data)
        if not bool(finite.all()):
            value = float(p.data[~finite].ravel()[0])
            raise Diverged(epoch, None, value, last_finite, f"parameter {name}")


def diverged_message(e: Diverged, batches: int, epochs_done: int, checkpoint, lr: float) -> str:
    """What a diverged run says: where, what became what, what was kept, the way on."""
    where = f"epoch {e.epoch + 1}" + (
        f", batch {e.batch + 1}/{batches}" if e.batch is not None else ""
    )
    last = f"; last finite training loss {e.last_finite:.4g}" if e.last_finite else ""
    if checkpoint is not None:
        kept = f"{checkpoint} keeps the state after epoch {epochs_done}"
    else:
        kept = "nothing was saved (it diverged in the first epoch)"
    return (
        f"diverged at {where}: {e.what} became {e.value}{last}; {kept}. "
        f"Lower the learning rate (--lr {lr:g} now) and start a new run"
    )


def growth_warning(h: dict, watch: LossWatch, lr: float) -> str | None:
    """A warning line when epoch ``h``'s mean training loss is far above the untrained
    model's: the run is diverging even while every loss is still finite."""
    initial = watch.initial
    if not initial or initial <= 0 or not h["train_loss"] > GROWTH_WARNING * initial:
        return None
    return (
        f"warning: epoch {h['epoch']}'s mean train loss {h['train_loss']:.4g} is "
        f"{h['train_loss'] / initial:.3g}x the untrained model's {initial:.4g}: the run is "
        f"diverging; lower --lr (now {lr:g})"
    )
