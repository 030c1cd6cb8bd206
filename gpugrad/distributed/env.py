"""Where this process sits in the job, read from the launcher's environment.

Launchers say so in different variables; the first family found wins:

- Open MPI's ``mpirun``: ``OMPI_COMM_WORLD_RANK``, ``..._SIZE``, ``..._LOCAL_RANK``
- MPICH / Intel MPI (Hydra): ``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``
- Slurm's ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``
- torchrun and friends: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (with ``MASTER_ADDR`` and
  ``MASTER_PORT`` for the rendezvous)

A process started without any of them is a job of one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# (launcher, rank variable, size variable, local rank variable); the MPI families come first
# because mpirun may also pass a user's RANK through to every process unchanged.
_FAMILIES = (
    ("mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("mpi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("mpi", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
    ("env", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
)

DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LaunchInfo:
    """Rank, world size and local rank (index on this machine), and who said so."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str | None = None  # "mpi", "slurm", "env" (torchrun-style) or None


def launch_info(environ=None) -> LaunchInfo:
    """Read the launcher's variables (``environ`` defaults to ``os.environ``).

    >>> launch_info({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    LaunchInfo(rank=1, world_size=4, local_rank=1, launcher='env')
    >>> launch_info({}).world_size
    1
    """
    env = os.environ if environ is None else environ
    for launcher, rank_var, size_var, local_var in _FAMILIES:
        if rank_var in env and size_var in env:
            try:
                rank, size = int(env[rank_var]), int(env[size_var])
                local = int(env.get(local_var, rank))
            except ValueError as e:
                raise ValueError(
                    f"gpugrad.distributed: bad launcher variables {rank_var}="
                    f"{env[rank_var]!r} {size_var}={env[size_var]!r}: {e}"
                ) from None
            if size < 1 or not 0 <= rank < size:
                raise ValueError(
                    f"gpugrad.distributed: {rank_var}={rank} is not a rank of {size_var}={size}"
                )
            return LaunchInfo(rank, size, local, launcher)
    return LaunchInfo()


def timeout_s(environ=None) -> float:
    """Seconds a collective may wait for the other ranks: ``GPUGRAD_DIST_TIMEOUT`` or 300."""
    env = os.environ if environ is None else environ
    text = env.get("GPUGRAD_DIST_TIMEOUT", "")
    if not text.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"GPUGRAD_DIST_TIMEOUT must be seconds, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"GPUGRAD_DIST_TIMEOUT must be positive, got {text!r}")
    return value
