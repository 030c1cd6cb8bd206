"""``gpugrad train`` on the command line: its options, a run's start or resume, exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from .. import activations
from .. import distributed as dist
from ..checkpoint import load_checkpoint
from ..data import DATASETS
from .builders import DeviceUnavailable
from .config import RESUMABLE_CHANGES, TrainConfig
from .trainer import Trainer


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 128,64, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def add_train_parser(sub) -> None:
    """The ``train`` subcommand of ``gpugrad``."""
    # Every default is None here so that --resume can tell what was given explicitly; the
    # real defaults live in gpugrad.train.TrainConfig and are shown in the help.
    train = sub.add_parser(
        "train",
        help="train an MLP classifier (digits by default) with checkpoints, metrics and plots",
        description="Train an MLP classifier. With no arguments: digits, MLP 64-128-64-10, "
        "Adam lr 3e-3 with a cosine schedule, batch 64, 30 epochs, output in runs/digits.",
    )
    add = train.add_argument
    add("--dataset", choices=DATASETS, help="default: digits (bundled)")
    add("--data-dir", help="folder with the IDX files, or an .npz (mnist, fashion-mnist)")
    add("--hidden", type=_hidden_sizes, help="hidden layer sizes, default 128,64")
    add("--activation", choices=activations.HIDDEN, help="default relu")
    add("--loss", choices=("cross_entropy", "multi_margin", "mse"), help="default cross_entropy")
    add("--optimizer", choices=("sgd", "adam", "adamw"), help="default adam")
    add("--lr", type=float, help="learning rate, default 3e-3")
    add("--momentum", type=float, help="SGD momentum, default 0.9")
    add("--weight-decay", type=float, help="default 0 (adamw: 0.01)")
    add("--batch-size", type=int, help="default 64")
    add("--epochs", type=int, help="total epochs, default 30 (may be raised on --resume)")
    add("--scheduler", choices=("none", "step", "cosine"), help="default cosine")
    add("--val-fraction", type=float, help="share of train held out for validation, default 0.1")
    add("--device", help="auto (default), cpu, cuda or cuda:N")
    add("--seed", type=int, help="seeds initialisation and shuffling, default 0")
    add("--out", help="output folder, default runs/<dataset>")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    add("--no-plots", dest="plots", action="store_const", const=False, help="skip the PNGs")
    add("--quiet", action="store_const", const=True, help="no progress bar")
    add(
        "--distributed",
        nargs="?",
        const="auto",
        choices=("auto", "mpi", "nccl"),
        help="data parallel over the processes of mpirun -n N (or RANK/WORLD_SIZE): "
        "--batch-size is split between them; auto: NCCL on GPUs, MPI on the CPU",
    )
    train.set_defaults(run=_run_from_args)


def _run_from_args(args) -> int:
    options = {k: v for k, v in vars(args).items() if k not in ("command", "run")}
    return run_cli(options)


def _fail(message: str) -> int:
    print(f"gpugrad train: {message}", file=sys.stderr)
    return 2


def run_cli(options: dict) -> int:
    """``gpugrad train``: ``options`` holds the settings given on the command line (None for
    the ones left out) plus ``resume``. Returns the exit status."""
    given = {
        k: v for k, v in options.items() if k not in ("resume", "distributed") and v is not None
    }
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(given) - fields
    if unknown:
        raise TypeError(f"run_cli: unknown settings {sorted(unknown)}")
    started = time.perf_counter()
    backend = options.get("distributed")
    if backend:
        # A CPU model all-reduces host memory: MPI's job even where NCCL could be had.
        if backend == "auto" and given.get("device", "auto").strip().lower() == "cpu":
            backend = "mpi"
        dist.init(backend)
    # Progress and results come from rank 0 alone; every rank still reports its own errors.
    say = print if dist.rank() == 0 else (lambda *args, **kwargs: None)
    try:
        if options.get("resume"):
            out = given.get("out") or str(Path("runs") / given.get("dataset", "digits"))
            state = _load_on_every_rank(Path(out) / "checkpoint.npz")
            saved = dict(state["config"])
            for key, value in given.items():
                if key in RESUMABLE_CHANGES:
                    continue
                old = tuple(saved[key]) if key == "hidden" else saved[key]
                if value != old:
                    return _fail(
                        f"--resume: --{key.replace('_', '-')} {value} differs from the "
                        f"checkpoint's {old}; drop it to resume, or use a new --out for a new run"
                    )
            saved.update({k: v for k, v in given.items() if k in RESUMABLE_CHANGES}, out=out)
            config = TrainConfig(**saved)
            trainer = Trainer(config)
            trainer.load_state_dict(state)
            say(f"resuming {trainer.checkpoint_path} after epoch {trainer.epoch}", flush=True)
        else:
            config = TrainConfig(**given)
            trainer = Trainer(config)
    except DeviceUnavailable as e:
        return _fail(str(e))
    except (FileNotFoundError, ValueError) as e:
        return _fail(f"error: {e}")
    say(trainer.describe(), flush=True)
    if trainer.val_set is trainer.test_set:
        say("note: --val-fraction 0 validates on the test split (best.npz is chosen by it)")
    result = trainer.fit()
    dist.shutdown()  # every rank is done with collectives: leave together
    if result.status != "done":
        say(result.message, file=sys.stderr)
        return 130
    out = config.out_dir
    written = [p.name for p in (out / n for n in _OUTPUTS) if p.exists()]
    best = result.best or {}
    say(
        f"test loss {result.test['loss']:.4f} acc {result.test['acc']:.2%} "
        f"(final model, {result.epochs_done} epochs) | best val acc "
        f"{best.get('val_acc', float('nan')):.2%} at epoch {best.get('epoch')} (best.npz)"
    )
    say(
        f"done in {time.perf_counter() - started:.1f} s; wrote {', '.join(written)} to {out}",
        flush=True,
    )
    return 0


def _load_on_every_rank(path: Path) -> dict:
    """The checkpoint, read by rank 0 and sent to the others (which may not see its disk);
    an error reading it is raised on every rank."""
    if dist.world_size() == 1:
        return load_checkpoint(path)
    result = None
    if dist.rank() == 0:
        try:
            result = (None, load_checkpoint(path))
        except (FileNotFoundError, ValueError) as e:
            result = (e, None)
    error, state = dist.broadcast_object(result)
    if error is not None:
        raise error
    return state


_OUTPUTS = ("metrics.json", "curves.png", "grad_flow.png", "checkpoint.npz", "best.npz")
