"""Train an MLP classifier end to end: data, model, optimizer, checkpoints, metrics, plots.

A run writes into its output folder: ``metrics.json`` (per epoch, rewritten atomically),
``checkpoint.npz`` (the latest state), ``best.npz`` (the state with the best validation
accuracy), ``best.safetensors`` (that state's model weights, PyTorch key names, with the
model's description in the header), ``curves.png`` and ``grad_flow.png``. Everything that
decides the result (parameters, optimizer and scheduler state, the RNG streams, the position
inside an epoch) is in the checkpoint, so a resumed run ends bit-identical on the CPU to one
that was never stopped. A loss that becomes NaN or infinite stops the run (status
"diverged") without saving: the last checkpoint stays the last good state.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from .. import creation
from .. import distributed as dist
from ..checkpoint import save_checkpoint, write_json
from ..data import DataLoader, load_dataset
from ..device import cuda_device_count, parse_device, xp_for
from ..engine import no_grad
from ..nn.utils import clip_grad_norm_
from ..plots import write_plots
from ..serialization import save as save_file
from . import records, rundir
from .builders import (
    ON_METRIC,
    PER_BATCH,
    build_model,
    build_optimizer,
    build_scheduler,
    check_batches,
    check_resumed_schedule,
    compute_loss,
    current_lr,
    resolve_device,
)
from .config import TrainConfig
from .guards import (
    Diverged,
    LossWatch,
    StopFlag,
    check_parameters,
    diverged_message,
    growth_warning,
)
from .records import Result

EVAL_BATCH = 1024


class Trainer:
    """One training run. ``fit()`` trains (or resumes) and returns a ``Result``.

    ``callback(trainer, epoch, batch)`` runs after every optimizer step (0-based indices);
    calling ``trainer.request_stop()`` there stops the run as Ctrl-C does.
    """

    def __init__(self, config: TrainConfig, log=None, callback=None):
        self.config = config
        self.log = log or (lambda line: print(line, flush=True))
        self.callback = callback
        self._stop: StopFlag | None = None
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
        check_batches(config, len(self.train_set), self.world)
        self.feature_range = (float(train.x.min()), float(train.x.max()))

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
        self.loader = loader_class(
            self.train_set, config.batch_size, shuffle=True, seed=config.seed, device=self.device
        )
        self.scheduler = build_scheduler(config, self.optimizer, len(self.loader))
        self.val_loader = DataLoader(self.val_set, EVAL_BATCH, device=self.device)
        self.test_loader = DataLoader(self.test_set, EVAL_BATCH, device=self.device)
        # Gradient flow is tracked for the weight matrices, one curve per Linear layer.
        self.tracked = [(n, p) for n, p in self.model.named_parameters() if p.ndim == 2]

        self.epoch = 0  # completed epochs
        self.position: dict | None = None  # where inside an epoch a stopped run left off
        self.history: list[dict] = []
        self.best: dict | None = None
        self.started = records.now()  # when the run began (kept across resumes)
        self.warnings: dict[str, str] = {}  # kind -> the line that was printed
        self.watch = LossWatch()

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
            "started": self.started,
            "initial_loss": self.watch.initial,
            "warnings": self.warnings,
        }

    def load_state_dict(self, state: dict) -> None:
        check_resumed_schedule(self.config, state.get("scheduler"), len(self.loader))
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
        # Checkpoints of earlier versions lack these three.
        self.started = state.get("started") or self.started
        self.watch = LossWatch(state.get("initial_loss"))
        self.warnings = dict(state.get("warnings") or {})

    # ------------------------------------------------------------------ files
    @property
    def checkpoint_path(self) -> Path:
        return self.config.out_dir / rundir.CHECKPOINT

    def _write_metrics(self, status: str, test=None, divergence=None) -> None:
        if self.is_main:
            doc = records.metrics(self, status, test, divergence)
            write_json(self.config.out_dir / rundir.METRICS, doc)

    def _save(self, best: bool = False) -> None:
        if not self.is_main:
            return
        state = self.state_dict()
        save_checkpoint(self.checkpoint_path, state)
        if best:
            out = self.config.out_dir
            save_checkpoint(out / rundir.BEST, state)
            header = records.weights_header(self)
            save_file(state["model"], out / rundir.BEST_WEIGHTS, metadata=header)

    # ------------------------------------------------------------------ loops
    def evaluate(self, loader) -> tuple[float, float]:
        """Mean loss and accuracy over a loader, without recording a graph."""
        cfg = self.config
        self.model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        with no_grad(), np.errstate(all="ignore"):
            for x, y in loader:
                logits = self.model(x)
                loss = compute_loss(cfg.loss, logits, y, self.classes, cfg.label_smoothing)
                n = len(y)
                total_loss += float(loss.item()) * n
                correct += int((logits.data.argmax(axis=1) == y.data).sum())
                seen += n
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def _train_epoch(self, epoch: int) -> bool:
        """Train one epoch (from ``self.position`` when resuming); False if stopped early.
        Raises Diverged when a loss is not finite."""
        # A diverging run overflows: the guard reports it, NumPy's warnings would only repeat it.
        with np.errstate(all="ignore"):
            return self._run_epoch(epoch)

    def _run_epoch(self, epoch: int) -> bool:
        cfg, watch = self.config, self.watch
        xp = xp_for(self.device)
        self.model.train()
        self.loader.set_epoch(epoch)
        start = 0
        # Running sums stay on the device (no sync per step) and in float64, and are saved
        # with a mid-epoch checkpoint so that the epoch's metrics match an unbroken run.
        # clip_norm and clipped (the norms before clipping, the steps clipped) are the same on
        # every rank: they are measured after the gradients' all-reduce.
        sums = {"loss": 0.0, "correct": 0, "seen": 0, "seconds": 0.0, "steps": 0}
        sums.update(clip_norm=0.0, clipped=0)
        grads = {name: 0.0 for name, _ in self.tracked}
        if self.position is not None and self.position["epoch"] == epoch:
            start = int(self.position["batch"])
            sums.update(self.position["sums"])
            grads.update(self.position["grad_norms"])
            if not self.is_main:  # the saved totals count once, on rank 0, when summed
                sums.update(loss=0.0, correct=0, seen=0)
        loss_sum = xp.asarray(sums["loss"], dtype=xp.float64)
        correct = xp.asarray(sums["correct"], dtype=xp.int64)
        clip_norm = xp.asarray(sums["clip_norm"], dtype=xp.float64)
        clipped = xp.asarray(sums["clipped"], dtype=xp.int64)
        grad_sums = {name: xp.asarray(v, dtype=xp.float64) for name, v in grads.items()}
        seen, steps = int(sums["seen"]), int(sums["steps"])
        bar = records.progress_bar(self, len(self.loader), f"epoch {epoch + 1}/{cfg.epochs}")
        if bar is not None:
            bar.update(start)
        t0 = time.perf_counter()
        batch, lr = start, current_lr(self.optimizer)
        try:
            for batch, (x, y) in enumerate(self.loader.iter_from(start), start=start):
                logits = self.model(x)
                loss = compute_loss(cfg.loss, logits, y, self.classes, cfg.label_smoothing)
                bad = watch.check()  # the previous batch's loss, while this one's is queued
                self.optimizer.zero_grad()
                loss.backward()
                if self.world > 1:
                    # Average now, weighted by this rank's share of the batch, so the norms
                    # below are the whole batch's; stop requests and a bad loss on any rank
                    # travel in the same all-reduce, so that every rank stops at this batch.
                    share = len(y) / self.loader.global_batch_size(batch)
                    pending = self._stop is not None and self._stop.pending
                    stops, bads = self.optimizer.synchronize(share, flags=(pending, bad))
                    if stops and self._stop is not None:
                        self._stop.requested = True
                    bad = bads > 0
                if bad:
                    raise watch.diverged()
                for name, p in self.tracked:
                    if p.grad is not None:
                        grad_sums[name] += xp.linalg.norm(p.grad.data)
                if cfg.clip_grad_norm is not None:  # on the averaged gradients, before the step
                    norm = clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm).data
                    clip_norm += norm
                    clipped += norm > cfg.clip_grad_norm
                lr = current_lr(self.optimizer)  # the lr of this step
                self.optimizer.step()
                if cfg.scheduler in PER_BATCH:
                    self.scheduler.step()
                watch.push(epoch, batch, loss.data)
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
                    # The state about to be saved must come from finite losses only.
                    totals = (float(loss_sum), int(correct), seen, watch.check())
                    if self.world > 1:
                        totals = self._agree(*totals)
                    if totals[3]:
                        raise watch.diverged()
                    self._check_parameters(epoch)
                    self.position = {
                        "epoch": epoch,
                        "batch": batch + 1,
                        "sums": {
                            "loss": totals[0],
                            "correct": int(totals[1]),
                            "seen": int(totals[2]),
                            "seconds": sums["seconds"] + time.perf_counter() - t0,
                            "steps": steps,
                            "clip_norm": float(clip_norm),
                            "clipped": int(clipped),
                        },
                        "grad_norms": {k: float(v) for k, v in grad_sums.items()},
                    }
                    return False
        finally:
            if bar is not None:
                bar.close()
        bad = watch.check()
        if self.world > 1:
            loss_sum, correct, seen, bad = self._agree(float(loss_sum), int(correct), seen, bad)
            seen = int(seen)
        if bad:
            raise watch.diverged()
        self._check_parameters(epoch)
        seconds = sums["seconds"] + time.perf_counter() - t0
        self.position = None
        epoch_scheduled = self.scheduler is not None and cfg.scheduler not in PER_BATCH
        if epoch_scheduled and cfg.scheduler not in ON_METRIC:
            self.scheduler.step()
        if self.world > 1:  # the ranks' batch norms saw different samples: rank 0's stand
            dist.broadcast_buffers(self.model)
        val_loss, val_acc = self.evaluate(self.val_loader)
        if not math.isfinite(val_loss):  # finite training losses, yet the weights overflow
            raise Diverged(epoch, None, val_loss, watch.last_finite, "the validation loss")
        train_loss = float(loss_sum) / max(seen, 1)
        if epoch_scheduled and cfg.scheduler in ON_METRIC:  # never the test split's loss
            self.scheduler.step(val_loss if self.val_set is not self.test_set else train_loss)
        self.history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_acc": int(correct) / max(seen, 1),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": lr,
                "time_s": round(seconds, 4),
                "samples_per_s": round(seen / max(seconds, 1e-9), 1),
                "grad_norm": {k: float(v) / max(steps, 1) for k, v in grad_sums.items()},
            }
        )
        if cfg.clip_grad_norm is not None:
            self.history[-1].update(clip_norm=float(clip_norm) / max(steps, 1))
            self.history[-1].update(clipped_steps=int(clipped), steps=steps)
        return True

    def _check_parameters(self, epoch: int) -> None:
        check_parameters(self.model, xp_for(self.device), epoch, self.watch.last_finite)

    def _warn_if_growing(self, h: dict) -> None:
        """Say once when the loss runs away without (yet) overflowing, e.g. --lr 1000."""
        line = (
            None if "diverging" in self.warnings else growth_warning(h, self.watch, self.config.lr)
        )
        if line:
            self.warnings["diverging"] = line
            self.log(line)

    def describe(self) -> str:
        """The run in one line: device, model, data, optimizer, output folder."""
        return records.describe(self)

    def fit(self) -> Result:
        """Train until ``config.epochs``, a stop request or a non-finite loss; write metrics,
        checkpoints and plots."""
        cfg = self.config
        if self.is_main:
            rundir.check_writable(cfg.out_dir)
            rundir.make(cfg.out_dir)
        started = time.perf_counter()
        status, diverged = "done", None
        with StopFlag(self.log, deferred=self.world > 1) as self._stop:
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
                        self.log(records.epoch_line(self.config, h))
                        self._warn_if_growing(h)
                    if not finished or self._stop.requested:
                        status = "interrupted"
                        break
            except Diverged as e:
                status, diverged = "diverged", e
            except KeyboardInterrupt:
                # A second Ctrl-C (or one outside the main thread) can land anywhere, e.g.
                # half-way through an optimizer step, so the in-memory state is not saved;
                # the last end-of-epoch checkpoint stands.
                status = "killed"
            finally:
                self._stop = None
        seconds = time.perf_counter() - started
        if status == "diverged":
            return self._diverged(diverged, seconds)
        if status == "killed":
            msg = (
                f"interrupted; {self.checkpoint_path} holds the state after epoch "
                f"{self.epoch}. Resume with: gpugrad train --out {cfg.out} --resume"
            )
            self._finish("interrupted")
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
            self._finish("interrupted")
            msg = (
                f"interrupted at {where}; saved {self.checkpoint_path}. "
                f"Resume with: gpugrad train --out {cfg.out} --resume"
            )
            return Result("interrupted", self.epoch, self.history, None, self.best, seconds, msg)
        test_loss, test_acc = self.evaluate(self.test_loader)
        test = {"loss": test_loss, "acc": test_acc, "epoch": self.epoch}
        self._finish("done", test)
        return Result("done", self.epoch, self.history, test, self.best, seconds)

    def _diverged(self, e: Diverged, seconds: float) -> Result:
        kept = self.checkpoint_path if self.epoch else None
        msg = diverged_message(e, len(self.loader), self.epoch, kept, self.config.lr)
        self._finish("diverged", divergence=e.to_json())
        return Result("diverged", self.epoch, self.history, None, self.best, seconds, msg)

    def _finish(self, status: str, test=None, divergence=None) -> None:
        self._write_metrics(status, test, divergence)
        if not self.config.plots or not self.history or not self.is_main:
            return
        error = write_plots(self.history, self.config.out_dir, self.config.dataset, self.best)
        if error:
            self.log(error)
