"""The job's state: which backend, this rank, and the collectives the rest of the package uses.

Exactly one backend per process, set by ``init`` and dropped by ``shutdown``. Before ``init``
(or after ``shutdown``) the process is a job of one and every collective is the identity, so
code written for the distributed case runs unchanged in a single process.
"""

from __future__ import annotations

import pickle
import sys
import traceback

import numpy as np

from .backend import Backend, MPIBackend
from .env import LaunchInfo, launch_info, timeout_s

BACKENDS = ("auto", "mpi", "nccl")

_state: dict = {"backend": None, "hook": None}


def _choose(requested: str, info: LaunchInfo) -> str:
    if requested not in BACKENDS:
        raise ValueError(f"gpugrad.distributed.init: backend must be one of {BACKENDS}")
    if requested != "auto":
        return requested
    if info.world_size == 1:
        return "local"
    from ..device import cuda_is_available

    if info.launcher == "env" or cuda_is_available():
        # One process per GPU is what NCCL is for; a torchrun-style launch has no MPI anyway.
        return "nccl"
    return "mpi"


def init(backend: str = "auto", timeout: float | None = None) -> Backend:
    """Join the job that the launcher started; returns the backend (idempotent).

    ``backend``: "mpi" (mpi4py, needs an MPI launcher such as ``mpirun -n N``), "nccl" (CuPy's
    NCCL, one process per GPU; ``mpirun`` or a torchrun-style ``RANK``/``WORLD_SIZE`` launch), or
    "auto": none for a single process without a launcher, NCCL when there is a GPU or the
    launch is torchrun-style, MPI otherwise. ``timeout``: seconds a collective may wait for the
    other ranks before the job is ended (default ``GPUGRAD_DIST_TIMEOUT`` or 300).

    Once the job has more than one process, an uncaught exception on any rank prints its
    traceback with the rank and ends every process, instead of leaving the others waiting.

    >>> import gpugrad.distributed as dist
    >>> dist.init().name, dist.rank(), dist.world_size()  # no launcher: a job of one
    ('local', 0, 1)
    >>> dist.shutdown()
    """
    if _state["backend"] is not None:
        return _state["backend"]
    info = launch_info()
    timeout = timeout_s() if timeout is None else float(timeout)
    chosen = _choose(backend, info)
    if chosen == "local":
        be = Backend(info, timeout)
    elif chosen == "mpi":
        try:
            be = MPIBackend(info, timeout)
        except ImportError as e:
            raise ImportError(
                f"gpugrad.distributed: the MPI backend needs mpi4py and an MPI ({e}); "
                "pip install 'gpugrad[mpi]' mpich  (or use the system's MPI)"
            ) from e
    else:
        from .nccl import NCCLBackend

        be = NCCLBackend(info, timeout)
    _state["backend"] = be
    if be.world_size > 1:
        _install_excepthook(be)
    return be


def _install_excepthook(be: Backend) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        lines = traceback.format_exception(kind, value, tb)
        sys.stderr.write(f"[rank {be.rank}] " + f"[rank {be.rank}] ".join(lines))
        be.abort(
            f"rank {be.rank} of {be.world_size} failed with {kind.__name__}: {value}; "
            "ending the job"
        )

    _state["hook"] = (hook, previous)
    sys.excepthook = hook


def is_initialized() -> bool:
    return _state["backend"] is not None


def backend() -> Backend | None:
    """The backend ``init`` chose, or None before it."""
    return _state["backend"]


def _backend() -> Backend:
    be = _state["backend"]
    return be if be is not None else Backend(LaunchInfo(), timeout_s())


def rank() -> int:
    """This process's rank (0 before ``init``)."""
    be = _state["backend"]
    return 0 if be is None else be.rank


def world_size() -> int:
    """The number of processes in the job (1 before ``init``)."""
    be = _state["backend"]
    return 1 if be is None else be.world_size


def local_rank() -> int:
    """This process's index among the job's processes on its machine (its GPU)."""
    be = _state["backend"]
    return 0 if be is None else be.local_rank


def is_main() -> bool:
    """True on rank 0: the process that prints and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (or end the job after the timeout)."""
    _backend().barrier(f"rank {rank()}: barrier")


def all_reduce(array, op: str = "sum", what: str = "all_reduce"):
    """Sum (``op="sum"``) or average (``"mean"``) a NumPy or CuPy array over all ranks, in place
    when it is contiguous; returns the result."""
    if op not in ("sum", "mean"):
        raise ValueError(f"all_reduce: op must be 'sum' or 'mean', got {op!r}")
    be = _backend()
    flat = array.reshape(-1) if array.flags.c_contiguous else array.ravel().copy()
    be.wait([be.iallreduce(flat)], f"rank {be.rank}: {what} of {flat.size} x {flat.dtype}")
    if op == "mean":
        flat /= be.world_size
    return flat.reshape(array.shape)


def broadcast(array, root: int = 0, what: str = "broadcast"):
    """Copy ``array`` (contiguous, the same shape and dtype everywhere) from ``root``, in place."""
    be = _backend()
    be.wait([be.ibroadcast(array, root)], f"rank {be.rank}: {what} of {array.size} x {array.dtype}")
    return array


def broadcast_int(value: int, root: int = 0) -> int:
    buf = np.array([value], np.int64)
    return int(broadcast(buf, root, "broadcast of a seed")[0])


def broadcast_object(obj, root: int = 0):
    """Rank ``root``'s ``obj`` on every rank (pickled; for small things such as a checkpoint)."""
    if world_size() == 1:
        return obj
    payload = np.frombuffer(pickle.dumps(obj), np.uint8) if rank() == root else None
    size = broadcast_int(0 if payload is None else payload.size, root)
    buf = payload.copy() if payload is not None else np.empty(size, np.uint8)
    broadcast(buf, root, "broadcast of an object")
    return obj if rank() == root else pickle.loads(buf.tobytes())


def shutdown() -> None:
    """Leave the job: wait for the other ranks, then forget the backend (MPI itself is finalized
    when the process exits)."""
    be = _state["backend"]
    if be is None:
        return
    if be.world_size > 1:
        be.barrier(f"rank {be.rank}: shutdown")
    be.close()
    hook = _state["hook"]
    if hook is not None and sys.excepthook is hook[0]:
        sys.excepthook = hook[1]
    _state["backend"] = _state["hook"] = None
