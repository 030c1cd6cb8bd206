"""A run's output folder: what it holds, which folder a new run takes, and whether it can write.

A folder holds a run when any of ``OUTPUTS`` is in it. A new run never writes into such a
folder by accident: without ``--out`` it takes ``runs/<dataset>``, or the next free
``runs/<dataset>-N`` when that holds a run (N above every number in use, so the highest number
is the newest run); with ``--out`` naming a folder that holds a run it refuses, naming the run
and the ways on (``--resume``, another ``--out``, ``--overwrite``). Everything here is checked
before the run writes anything.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path

from ..checkpoint import load_checkpoint

METRICS, CHECKPOINT, BEST, BEST_WEIGHTS = (
    "metrics.json",
    "checkpoint.npz",
    "best.npz",
    "best.safetensors",
)
PLOTS = ("curves.png", "grad_flow.png")
OUTPUTS = (METRICS, CHECKPOINT, BEST, BEST_WEIGHTS, *PLOTS)
RUNS = Path("runs")


class OutputError(ValueError):
    """The output folder cannot be used as asked; the message names it and the way on."""


def holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in OUTPUTS)


def status(folder: Path) -> str | None:
    """The status metrics.json records ("done", "diverged", ...), or None without one."""
    try:
        return json.loads((folder / METRICS).read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resumable(folder: Path) -> bool:
    """Whether --resume can continue the run in ``folder``: it has a checkpoint and did not
    finish or diverge (either would only end the same way again)."""
    return (folder / CHECKPOINT).exists() and status(folder) not in ("done", "diverged")


def describe(folder: Path) -> str:
    """What the run in ``folder`` is, in a few words: "done, 30/30 epochs"."""
    try:
        metrics = json.loads((folder / METRICS).read_text())
        said, done = metrics["status"], len(metrics["epochs"])
        planned = metrics["config"]["epochs"]
    except (OSError, ValueError, KeyError, TypeError):
        try:  # no readable metrics: the checkpoint still knows how far the run got
            state = load_checkpoint(folder / CHECKPOINT)
            return f"a checkpoint after epoch {state['epoch']}/{state['config']['epochs']}"
        except (OSError, ValueError, KeyError, TypeError):
            present = [name for name in OUTPUTS if (folder / name).exists()]
            return "files of a run: " + ", ".join(present)
    if said == "running":
        said = "running, or stopped without saying so"
    return f"{said}, {done}/{planned} epochs"


def _numbered(base: Path) -> dict[int, Path]:
    """runs/digits -> {1: runs/digits, 2: runs/digits-2, ...} for the folders that exist."""
    found = {1: base} if base.exists() else {}
    if base.parent.is_dir():
        pattern = re.compile(re.escape(base.name) + r"-(\d+)")
        for p in base.parent.iterdir():
            m = pattern.fullmatch(p.name)
            if m and p.is_dir():
                found[int(m.group(1))] = p
    return found


def default_folder(dataset: str) -> Path:
    return RUNS / dataset


def newest_run(dataset: str) -> Path:
    """The run ``--resume`` continues when ``--out`` is not given: the highest-numbered
    ``runs/<dataset>[-N]`` that holds a run (``runs/<dataset>`` when none does)."""
    runs = {n: p for n, p in _numbered(default_folder(dataset)).items() if holds_run(p)}
    return runs[max(runs)] if runs else default_folder(dataset)


def new_run_folder(out: str | None, dataset: str, overwrite: bool) -> tuple[Path, str]:
    """The folder a new run writes to, and a note for the user ("" when there is nothing to
    say). Raises OutputError for a folder that holds a run (unless ``overwrite``) or is a file.
    """
    if out is None and not overwrite:
        base = default_folder(dataset)
        taken = _numbered(base)
        if not any(holds_run(p) for p in taken.values()) and not base.is_file():
            return base, ""
        folder = base.with_name(f"{base.name}-{max(taken, default=1) + 1}")
        newest = newest_run(dataset)
        resume = f", --resume to continue {newest}" if resumable(newest) else ""
        note = (
            f"note: {newest} holds an earlier run ({describe(newest)}); this run writes to "
            f"{folder} (--out DIR to choose{resume})"
        )
        return folder, note
    folder = Path(out) if out is not None else default_folder(dataset)
    flag = f"--out {folder}"
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag}: is a file, not a folder; give a folder for the run's outputs")
    if holds_run(folder) and not overwrite:
        resume = "continue it with --resume, " if resumable(folder) else ""
        raise OutputError(
            f"{flag} already holds a run ({describe(folder)}); {resume}write this one "
            "elsewhere with --out DIR, or replace it with --overwrite"
        )
    return folder, ""


def check_writable(folder: Path) -> None:
    """Prove that ``folder`` can be made and written to, without creating it: a temporary file
    in it, or in the nearest folder above it that exists. OutputError if not."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == folder else f"is inside {existing}, a file"
        raise OutputError(f"--out {folder}: {what}, not a folder; give a folder for the outputs")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise OutputError(
            f"--out {folder}: cannot write there ({reason}); choose a folder you can write to"
        ) from None


def make(folder: Path) -> None:
    """Create the run's folder (after ``check_writable``); OutputError if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {folder}: cannot create it ({e.strerror or e})") from None


def clear(folder: Path) -> None:
    """Remove the outputs of the run in ``folder`` (``--overwrite``); other files stay."""
    for name in OUTPUTS:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
