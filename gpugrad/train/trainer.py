"""Train an MLP classifier end to end: data, model, optimizer, checkpoints, metrics, plots.

``gpugrad train`` is a thin wrapper around ``Trainer``. A run writes into its output folder:
``metrics.json`` (per epoch, rewritten atomically), ``checkpoint.npz`` (the latest state),
``best.npz`` (the state with the best validation accuracy), ``curves.png`` and
``grad_flow.png``. Everything that decides the result (parameters, optimizer and scheduler
state, the RNG streams, the position inside an epoch) is in the checkpoint, so a resumed run
ends bit-identical on the CPU to one that was never stopped.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import creation
from .. import distributed as dist
from ..autograd import no_grad
from ..checkpoint import save_checkpoint, write_json
from ..data import DataLoader, load_dataset
from ..device import cuda_device_count, parse_device, xp_for
from ..plots import write_plots
from .builders import (
    build_model,
    build_optimizer,
    build_scheduler,
    compute_loss,
    current_lr,
    resolve_device,
)
from .config import TrainConfig

EVAL_BATCH = 1024


def _try_import(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        return e


class _StopFlag:
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


@dataclass
class Result:
    """What a finished or interrupted run reports back."""

    status: str  # "done" or "interrupted"
    epochs_done: int
    history: list = field(default_factory=list)
    test: dict | None = None
    best: dict | None = None
    seconds: float = 0.0
    message: str = ""


class Trainer:
    """One training run. ``fit()`` trains (or resumes) and returns a ``Result``.

    ``callback(trainer, epoch, batch)`` runs after every optimizer step (0-based indices);
    calling ``trainer.request_stop()`` there stops the run as Ctrl-C does.
    """

    def __init__(self, config: TrainConfig, log=None, callback=None):
        self.config = config
        self.log = log or (lambda line: print(line, flush=True))
        self.callback = callback
        self._stop: _StopFlag | None = None
        self.device, self.device_note = resolve_device(config.device)
        # Data parallel when gpugrad.distributed was initialized with several ranks: each
        # rank trains on its slice of every global batch; only rank 0 prints and writes files.
        self.world = dist.world_size()
        self.is_main = dist.rank() == 0
        if not self.is_main:
            self.log = lambda line: None
        if self.world > 1 and self.device.startswith("cuda") and ":" not in config.device:
            self.device = parse_device(f"cuda:{dist.local_rank() % cuda_device_count()}")

        train = load_dataset(config.dataset, "train", config.data_dir)
        self.test_set = load_dataset(config.dataset, "test", config.data_dir)
        if config.val_fraction > 0:
            self.train_set, self.val_set = train.split(config.val_fraction)
        else:  # no validation split: model selection then sees the test set, said in the log
            self.train_set, self.val_set = train, self.test_set
        self.classes = train.num_classes
        self.in_features = train.num_features

        creation.manual_seed(config.seed)
        self.model = build_model(config, self.in_features, self.classes)
        if self.device != "cpu":
            self.model.to(self.device)
        self.optimizer = build_optimizer(config, list(self.model.parameters()))
        loader_class = DataLoader
        if self.world > 1:
            dist.broadcast_parameters(self.model)
            self.optimizer = dist.DistributedOptimizer(self.optimizer)
            loader_class = dist.DistributedLoader
        self.scheduler = build_scheduler(config, self.optimizer)
        self.loader = loader_class(
            self.train_set, config.batch_size, shuffle=True, seed=config.seed, device=self.device
        )
        self.val_loader = DataLoader(self.val_set, EVAL_BATCH, device=self.device)
        self.test_loader = DataLoader(self.test_set, EVAL_BATCH, device=self.device)
        # Gradient flow is tracked for the weight matrices, one curve per Linear layer.
        self.tracked = [(n, p) for n, p in self.model.named_parameters() if p.ndim == 2]

        self.epoch = 0  # completed epochs
        self.position: dict | None = None  # where inside an epoch a stopped run left off
        self.history: list[dict] = []
        self.best: dict | None = None

    # ------------------------------------------------------------------ state
    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.request()

    def _agree(self, *sums):
        """Sum per-rank numbers over ranks, together with the ranks' stop requests; a request
        on any rank becomes ``requested`` on all of them. Returns the sums."""
        flag = self._stop is not None and self._stop.pending
        *totals, stops = dist.all_reduce(
            np.array([*sums, flag], np.float64), what="epoch totals"
        ).tolist()
        if stops and self._stop is not None:
            self._stop.requested = True
        return totals

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.model.parameters()))

    def state_dict(self) -> dict:
        return {
            "config": self.config.to_json(),
            "epoch": self.epoch,
            "position": self.position,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": {
                "gpugrad": creation.default_rng().bit_generator.state,
                "loader": self.loader.state_dict(),
            },
            "history": self.history,
            "best": self.best,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        # Set the state on the live generator rather than replacing it, so layers holding a
        # reference to it (dropout) continue the restored stream.
        creation.default_rng().bit_generator.state = state["rng"]["gpugrad"]
        self.loader.load_state_dict(state["rng"]["loader"])
        self.epoch = int(state["epoch"])
        self.position = state.get("position")
        self.history = list(state.get("history") or [])
        self.best = state.get("best")

    # ------------------------------------------------------------------ files
    @property
    def checkpoint_path(self) -> Path:
        return self.config.out_dir / "checkpoint.npz"

    def _write_metrics(self, status: str, test: dict | None = None) -> None:
        if not self.is_main:
            return
        write_json(
            self.config.out_dir / "metrics.json",
            {
                "status": status,
                "config": self.config.to_json(),
                "device": self.device,
                "num_parameters": self.num_parameters(),
                "sizes": {
                    "train": len(self.train_set),
                    "val": len(self.val_set) if self.val_set is not self.test_set else 0,
                    "test": len(self.test_set),
                },
                "epochs": self.history,
                "best": self.best,
                "test": test,
            },
        )

    def _save(self, best: bool = False) -> None:
        if not self.is_main:
            return
        state = self.state_dict()
        save_checkpoint(self.checkpoint_path, state)
        if best:
            save_checkpoint(self.config.out_dir / "best.npz", state)

    # ------------------------------------------------------------------ loops
    def evaluate(self, loader) -> tuple[float, float]:
        """Mean loss and accuracy over a loader, without recording a graph."""
        self.model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        with no_grad():
            for x, y in loader:
                logits = self.model(x)
                loss = compute_loss(self.config.loss, logits, y, self.classes)
                n = len(y)
                total_loss += float(loss.item()) * n
                correct += int((logits.data.argmax(axis=1) == y.data).sum())
                seen += n
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def _progress(self, total: int, desc: str):
        if self.config.quiet or not sys.stderr.isatty() or not self.is_main:
            return None
        tqdm = _try_import("tqdm")
        if isinstance(tqdm, ImportError):
            if not getattr(self, "_said_no_tqdm", False):
                self.log(f"progress bar skipped: tqdm is not installed ({tqdm})")
                self._said_no_tqdm = True
            return None
        return tqdm.tqdm(total=total, desc=desc, unit="batch", leave=False, file=sys.stderr)

    def _train_epoch(self, epoch: int) -> bool:
        """Train one epoch (from ``self.position`` when resuming); False if stopped early."""
        cfg = self.config
        xp = xp_for(self.device)
        self.model.train()
        self.loader.set_epoch(epoch)
        start = 0
        # Running sums stay on the device (no sync per step) and in float64, and are saved
        # with a mid-epoch checkpoint so that the epoch's metrics match an unbroken run.
        sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0, "steps": 0}
        grads = {name: 0.0 for name, _ in self.tracked}
        if self.position is not None and self.position["epoch"] == epoch:
            start = int(self.position["batch"])
            sums.update(self.position["sums"])
            grads.update(self.position["grad_norms"])
            if not self.is_main:  # the saved totals count once, on rank 0, when summed
                sums.update(loss=0.0, correct=0, seen=0)
        loss_sum = xp.asarray(sums["loss"], dtype=xp.float64)
        correct = xp.asarray(sums["correct"], dtype=xp.int64)
        grad_sums = {name: xp.asarray(v, dtype=xp.float64) for name, v in grads.items()}
        seen, steps = int(sums["seen"]), int(sums["steps"])
        bar = self._progress(len(self.loader), f"epoch {epoch + 1}/{cfg.epochs}")
        if bar is not None:
            bar.update(start)
        t0 = time.perf_counter()
        batch = start
        try:
            for batch, (x, y) in enumerate(self.loader.iter_from(start), start=start):
                logits = self.model(x)
                loss = compute_loss(cfg.loss, logits, y, self.classes)
                self.optimizer.zero_grad()
                loss.backward()
                if self.world > 1:
                    # Average now, weighted by this rank's share of the batch, so the norms
                    # below are the whole batch's; stop requests travel in the same all-reduce.
                    share = len(y) / self.loader.global_batch_size(batch)
                    pending = self._stop is not None and self._stop.pending
                    stops = self.optimizer.synchronize(share, flags=(pending,))
                    if stops[0] and self._stop is not None:
                        self._stop.requested = True
                for name, p in self.tracked:
                    if p.grad is not None:
                        grad_sums[name] += xp.linalg.norm(p.grad.data)
                self.optimizer.step()
                n = len(y)
                loss_sum += loss.data * n
                correct += (logits.data.argmax(axis=1) == y.data).sum()
                seen += n
                steps += 1
                if bar is not None:
                    bar.update(1)
                    if batch % 10 == 0:
                        rate = (seen - sums["seen"]) / max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix(loss=f"{float(loss.item()):.4f}", samples=f"{rate:,.0f}/s")
                if self.callback is not None:
                    self.callback(self, epoch, batch)
                stop = self._stop is not None and self._stop.requested
                if stop and batch + 1 < len(self.loader):
                    totals = (float(loss_sum), int(correct), seen)
                    if self.world > 1:
                        totals = self._agree(*totals)
                    self.position = {
                        "epoch": epoch,
                        "batch": batch + 1,
                        "sums": {
                            "loss": totals[0],
                            "correct": int(totals[1]),
                            "seen": int(totals[2]),
                            "seconds": sums["seconds"] + time.perf_counter() - t0,
                            "steps": steps,
                        },
                        "grad_norms": {k: float(v) for k, v in grad_sums.items()},
                    }
                    return False
        finally:
            if bar is not None:
                bar.close()
        if self.world > 1:
            loss_sum, correct, seen = self._agree(float(loss_sum), int(correct), seen)
            seen = int(seen)
        seconds = sums["seconds"] + time.perf_counter() - t0
        self.position = None
        lr = current_lr(self.optimizer)
        if self.scheduler is not None:
            self.scheduler.step()
        val_loss, val_acc = self.evaluate(self.val_loader)
        self.history.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(loss_sum) / max(seen, 1),
                "train_acc": int(correct) / max(seen, 1),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": lr,
                "time_s": round(seconds, 4),
                "samples_per_s": round(seen / max(seconds, 1e-9), 1),
                "grad_norm": {k: float(v) / max(steps, 1) for k, v in grad_sums.items()},
            }
        )
        return True

    def _epoch_line(self, h: dict) -> str:
        width = len(str(self.config.epochs))
        return (
            f"epoch {h['epoch']:>{width}}/{self.config.epochs}  "
            f"train loss {h['train_loss']:.4f} acc {h['train_acc']:6.2%}  "
            f"val loss {h['val_loss']:.4f} acc {h['val_acc']:6.2%}  "
            f"lr {h['lr']:.2e}  {h['time_s']:.2f} s ({h['samples_per_s']:,.0f} samples/s)"
        )

    def describe(self) -> str:
        cfg = self.config
        sizes = "-".join(str(s) for s in (self.in_features, *cfg.hidden, self.classes))
        val = (
            f"{len(self.val_set):,} val"
            if self.val_set is not self.test_set
            else "val = test split"
        )
        device = self.device + (f" ({self.device_note})" if self.device_note else "")
        if self.world > 1:
            be = dist.backend()
            device += f" x {self.world} ranks ({be.name if be else '?'})"
        return (
            f"device {device} | model MLP {sizes} {cfg.activation}, "
            f"{self.num_parameters():,} parameters | {cfg.dataset}: "
            f"{len(self.train_set):,} train, {val}, {len(self.test_set):,} test | "
            f"{cfg.optimizer} lr {cfg.lr:g}, {cfg.scheduler} schedule, batch {cfg.batch_size}"
        )

    def fit(self) -> Result:
        """Train until ``config.epochs`` or a stop request; write metrics, checkpoints, plots."""
        cfg = self.config
        if self.is_main:
            cfg.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        status = "done"
        with _StopFlag(self.log, deferred=self.world > 1) as self._stop:
            try:
                while self.epoch < cfg.epochs:
                    finished = self._train_epoch(self.epoch)
                    if finished:
                        self.epoch += 1
                        h = self.history[-1]
                        is_best = self.best is None or h["val_acc"] > self.best["val_acc"]
                        if is_best:
                            self.best = {"epoch": h["epoch"], "val_acc": h["val_acc"]}
                        self._save(best=is_best)
                        self._write_metrics("running")
                        self.log(self._epoch_line(h))
                    if not finished or self._stop.requested:
                        status = "interrupted"
                        break
            except KeyboardInterrupt:
                # A second Ctrl-C (or one outside the main thread) can land anywhere, e.g.
                # half-way through an optimizer step, so the in-memory state is not saved;
                # the last end-of-epoch checkpoint stands.
                status = "killed"
            finally:
                self._stop = None
        seconds = time.perf_counter() - started
        if status == "killed":
            msg = (
                f"interrupted; {self.checkpoint_path} holds the state after epoch "
                f"{self.epoch}. Resume with: gpugrad train --out {cfg.out} --resume"
            )
            self._write_metrics("interrupted")
            self._plots()
            return Result("interrupted", self.epoch, self.history, None, self.best, seconds, msg)
        if status == "interrupted":
            if self.position is not None:
                self._save()
                where = (
                    f"epoch {self.position['epoch'] + 1}, batch {self.position['batch']}"
                    f"/{len(self.loader)}"
                )
            else:
                where = f"the end of epoch {self.epoch}"
            self._write_metrics("interrupted")
            self._plots()
            msg = (
                f"interrupted at {where}; saved {self.checkpoint_path}. "
                f"Resume with: gpugrad train --out {cfg.out} --resume"
            )
            return Result("interrupted", self.epoch, self.history, None, self.best, seconds, msg)
        test_loss, test_acc = self.evaluate(self.test_loader)
        test = {"loss": test_loss, "acc": test_acc, "epoch": self.epoch}
        self._write_metrics("done", test)
        self._plots()
        return Result("done", self.epoch, self.history, test, self.best, seconds)

    def _plots(self) -> None:
        if not self.config.plots or not self.history or not self.is_main:
            return
        error = write_plots(self.history, self.config.out_dir, self.config.dataset)
        if error:
            self.log(error)
