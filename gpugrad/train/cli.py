"""``gpugrad train`` on the command line: its options, a run's start or resume, exit codes.

The options come from ``TrainConfig``'s fields (``config.py``); only ``--resume``,
``--overwrite`` and ``--distributed`` are the command line's own. Every mistake a user can make
ends with one line on stderr that names the option or file and the way on, before anything is
written. Exit codes: 0 done, 2 a usage error (a bad value, an unusable ``--out``, a missing
optional dependency or device), 3 the loss diverged, 130 interrupted (Ctrl-C), 1 a failure
while running (a disk that fills up).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .. import distributed as dist
from ..checkpoint import load_checkpoint
from . import rundir
from .builders import DeviceUnavailable
from .config import PLANNED, ConfigError, TrainConfig, check_value, fields, flag_of, shown
from .trainer import Trainer

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
_OWN = ("resume", "overwrite", "distributed")  # options that are not TrainConfig fields
_EXTRAS = {  # a missing optional module -> what to install
    "mpi4py": "pip install 'gpugrad[mpi]' mpich (or use the system's MPI)",
    "cupy": "pip install 'gpugrad[cuda12]' or 'gpugrad[cuda13]', matching the CUDA driver",
}


class UsageError(Exception):
    """A mistake on the command line: the message is the one line to print."""


def add_train_parser(sub) -> None:
    """The ``train`` subcommand of ``gpugrad``, one argument per TrainConfig field."""
    train = sub.add_parser(
        "train",
        help="train an MLP classifier (digits by default) with checkpoints, metrics and plots",
        description="Train an MLP classifier. With no arguments: digits, MLP 64-128-64-10, "
        "Adam lr 3e-3 with a cosine schedule, batch 64, 30 epochs, output in runs/digits "
        "(runs/digits-2, -3, ... when that holds a run). Exit codes: 0 done, 2 usage error, "
        "3 diverged, 130 interrupted.",
    )
    # Every default is None here so that --resume can tell what was given explicitly; the
    # real defaults live in TrainConfig and are shown in the help.
    for f in fields():
        help_text = f.metadata["help"]
        if isinstance(f.default, bool):
            train.add_argument(
                flag_of(f), dest=f.name, action="store_const", const=not f.default, help=help_text
            )
            continue
        if f.default is not None:
            help_text += f" (default {shown(f.default)})"
        parse = f.metadata["parse"] or (str if f.default is None else type(f.default))
        train.add_argument(
            flag_of(f),
            dest=f.name,
            type=_argparse_type(parse),
            choices=f.metadata["choices"],
            help=help_text,
            metavar=None if f.metadata["choices"] else f.metadata["metavar"],
        )
    add = train.add_argument
    add(
        "--resume",
        action="store_true",
        help="continue the run in OUT (default: the newest "
        "runs/<dataset>[-N]) from its checkpoint.npz",
    )
    add(
        "--overwrite",
        action="store_true",
        help="replace the run in OUT: its metrics, "
        "checkpoints, weights and plots are deleted first",
    )
    add(
        "--distributed",
        nargs="?",
        const="auto",
        choices=("auto", "mpi", "nccl"),
        help="data parallel over the processes of mpirun -n N (or RANK/WORLD_SIZE): "
        "--batch-size is split between them; auto: NCCL on GPUs, MPI on the CPU",
    )
    train.set_defaults(run=lambda args: run_cli(_options(args)))


def _argparse_type(parse):
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")  # argparse names it in errors
    return convert


def _options(args) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("command", "run")}


def run_cli(options: dict) -> int:
    """``gpugrad train``: ``options`` holds the settings given on the command line (None for
    the ones left out) plus ``resume``, ``overwrite`` and ``distributed``. Returns the exit
    status; prints one line on stderr for a usage error."""
    try:
        return _run(options)
    except (UsageError, ConfigError, rundir.OutputError, DeviceUnavailable) as e:
        return _fail(str(e))
    except (FileNotFoundError, ValueError) as e:  # a dataset or checkpoint that cannot be read
        return _fail(f"error: {e}")


def _fail(message: str) -> int:
    print(f"gpugrad train: {message}", file=sys.stderr)
    return EXIT_USAGE


def _run(options: dict) -> int:
    given = {k: v for k, v in options.items() if k not in _OWN and v is not None}
    by_name = {f.name: f for f in fields()}
    unknown = set(given) - set(by_name)
    if unknown:
        raise TypeError(f"run_cli: unknown settings {sorted(unknown)}")
    for name, value in given.items():  # each value on its own, before anything else happens
        check_value(by_name[name], value)
    resume, overwrite = bool(options.get("resume")), bool(options.get("overwrite"))
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; choose one")
    if not resume:  # a new run: the whole configuration is checked before any process starts
        TrainConfig(**{k: v for k, v in given.items() if k != "out"})
    started = time.perf_counter()
    _init_distributed(options.get("distributed"), given)
    # Progress and results come from rank 0 alone; every rank still reports its own errors.
    say = print if dist.rank() == 0 else (lambda *args, **kwargs: None)
    if resume:
        folder, state, status = _on_rank_0(lambda: _find_resumable(given))
        config = _resumed_config(state, given, folder, status)
        trainer = Trainer(config)
        trainer.load_state_dict(state)
        say(f"resuming {trainer.checkpoint_path} after epoch {trainer.epoch}", flush=True)
    else:
        folder, note = _on_rank_0(lambda: _choose_folder(given, overwrite))
        config = TrainConfig(**{**given, "out": str(folder)})
        trainer = Trainer(config)
        if note:
            say(note)
    say(trainer.describe(), flush=True)
    if trainer.val_set is trainer.test_set:
        say("note: --val-fraction 0 validates on the test split (best.npz is chosen by it)")
    if overwrite and dist.rank() == 0:
        rundir.clear(folder)
    try:
        result = trainer.fit()
    except OSError as e:  # the disk filled up, the folder vanished: not a bug, but no run
        message = f"gpugrad train: cannot write {e.filename or config.out}: {e.strerror or e}"
        if dist.world_size() > 1:
            dist.backend().abort(message)  # ends every rank, not just this one
        print(message, file=sys.stderr)
        return 1
    dist.shutdown()  # every rank is done with collectives: leave together
    if result.status != "done":
        say(result.message, file=sys.stderr)
        return EXIT_DIVERGED if result.status == "diverged" else EXIT_INTERRUPTED
    _report(say, result, config, time.perf_counter() - started)
    return 0


def _init_distributed(backend: str | None, given: dict) -> None:
    if not backend:
        return
    # A CPU model all-reduces host memory: MPI's job even where NCCL could be had.
    if backend == "auto" and given.get("device", "auto").strip().lower() == "cpu":
        backend = "mpi"
    try:
        dist.init(backend)
    except ImportError as e:
        missing = e.name or next((m for m in _EXTRAS if m in str(e)), None)
        hint = _EXTRAS.get((missing or "").split(".")[0], "install it")
        raise UsageError(
            f"--distributed {backend}: {missing or e} is not installed; {hint}"
        ) from None
    except RuntimeError as e:  # no GPU for NCCL, a launcher MPI does not recognise
        raise UsageError(f"--distributed {backend}: {e}") from None


def _on_rank_0(work):
    """``work()`` on rank 0 (whose disk holds the runs), its result or error sent to every
    rank, so that all of them go on or stop together."""
    if dist.world_size() == 1:
        return work()
    result = None
    if dist.rank() == 0:
        try:
            result = (None, work())
        except (UsageError, ConfigError, rundir.OutputError, FileNotFoundError, ValueError) as e:
            result = (e, None)
    error, value = dist.broadcast_object(result)
    if error is not None:
        raise error
    return value


def _choose_folder(given: dict, overwrite: bool) -> tuple[Path, str]:
    folder, note = rundir.new_run_folder(
        given.get("out"), given.get("dataset", "digits"), overwrite
    )
    rundir.check_writable(folder)
    return folder, note


def _find_resumable(given: dict) -> tuple[Path, dict, str | None]:
    if "out" in given:
        folder = Path(given["out"])
    else:
        folder = rundir.newest_run(given.get("dataset", "digits"))
    if not (folder / rundir.CHECKPOINT).exists():
        raise UsageError(
            f"--resume: {folder} holds no {rundir.CHECKPOINT} to continue; give --out the "
            "folder of the run to resume, or start a new run without --resume"
        )
    status = rundir.status(folder)
    if status == "diverged":
        raise UsageError(
            f"--resume: the run in {folder} diverged; resuming it would diverge again at the "
            "same batch. Start a new run with a lower --lr (--out DIR, or --overwrite)"
        )
    rundir.check_writable(folder)
    return folder, load_checkpoint(folder / rundir.CHECKPOINT), status


def _resumed_config(state: dict, given: dict, folder: Path, status) -> TrainConfig:
    saved = TrainConfig.from_json(state["config"]).to_json()
    for key, value in given.items():
        f = next(f for f in fields() if f.name == key)
        if f.metadata["resumable"]:
            continue
        old = tuple(saved[key]) if key == "hidden" and key in saved else saved.get(key)
        if value != old:
            was = f"the checkpoint's {shown(old)}" if old is not None else "the checkpoint's run"
            raise UsageError(
                f"--resume: {flag_of(f)} {shown(value)} differs from {was}; drop it to resume, "
                "or use a new --out for a new run"
            )
    epochs_done, planned = int(state["epoch"]), int(saved["epochs"])
    epochs = given.get("epochs", planned)
    # A run stopped inside an epoch, or after its last epoch but before the test evaluation.
    unfinished = state.get("position") is not None or status not in ("done", None)
    if epochs != planned and saved["scheduler"] in PLANNED:
        raise UsageError(
            f"--resume: --epochs {epochs} differs from the {planned} this run's "
            f"{saved['scheduler']} schedule is planned over; fewer would leave the learning "
            "rate un-annealed, more would run past the schedule. Drop --epochs to resume, or "
            f"start a new run with --epochs {epochs}"
        )
    if epochs < epochs_done or (epochs == epochs_done and not unfinished):
        more = "" if saved["scheduler"] in PLANNED else f", or raise --epochs above {epochs_done}"
        raise UsageError(
            f"--resume: {folder} has done {epochs_done} of {epochs} epochs, nothing is left to "
            f"train; start a new run (--out DIR, or --overwrite){more}"
        )
    resumed = {k: v for k, v in given.items() if k != "out"}
    return TrainConfig.from_json({**saved, **resumed, "out": str(folder)})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _report(say, result, config: TrainConfig, seconds: float) -> None:
    out = config.out_dir
    written = [name for name in rundir.OUTPUTS if (out / name).exists()]
    line = (
        f"test loss {result.test['loss']:.4f} acc {result.test['acc']:.2%} "
        f"(final model, {_plural(result.epochs_done, 'epoch')})"
    )
    if result.best:
        line += (
            f" | best val acc {result.best['val_acc']:.2%} at epoch {result.best['epoch']} "
            f"({rundir.BEST}, {rundir.BEST_WEIGHTS})"
        )
    say(line)
    say(f"done in {seconds:.1f} s; wrote {', '.join(written)} to {out}", flush=True)
