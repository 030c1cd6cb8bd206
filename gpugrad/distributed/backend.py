"""Transports: a job of one (no communication), and MPI through mpi4py.

Every backend offers the same few collectives on flat, contiguous arrays, each started
without blocking and finished by ``wait``: ``iallreduce`` (sum, in place) and ``ibroadcast``.
``wait`` polls instead of blocking so that it can give up: a collective that has not finished
after ``timeout`` seconds (``GPUGRAD_DIST_TIMEOUT``) means another rank died, hangs, or called
a different collective, and the job ends with a message naming this rank and the operation.
A silent hang is the one outcome a job on many machines must never have.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
import warnings

import numpy as np

from .env import LaunchInfo


def _is_cupy(buf) -> bool:
    return hasattr(buf, "__cuda_array_interface__")


class Pending:
    """A started collective: ``test()`` says whether it finished, ``finish()`` runs once after."""

    __slots__ = ("test", "finish")

    def __init__(self, test, finish=None):
        self.test = test
        self.finish = finish


_DONE = Pending(lambda: True)


class Backend:
    """The interface, and the job of one: every collective is the identity."""

    name = "local"

    def __init__(self, info: LaunchInfo, timeout: float):
        self.rank = info.rank
        self.world_size = info.world_size
        self.local_rank = info.local_rank
        self.timeout = timeout

    def staged(self, buf) -> bool:
        """Whether ``buf`` has to be copied to another memory for this backend's collectives."""
        return False

    def warn_if_staged(self, buf) -> None:
        """Warn, once per process, that buffers like ``buf`` take a detour through a copy."""
        if self.staged(buf) and not getattr(self, "_warned_staging", False):
            self._warned_staging = True
            warnings.warn(self._staging_message, RuntimeWarning, stacklevel=3)

    _staging_message = ""

    def iallreduce(self, buf) -> Pending:
        """Start summing ``buf`` over all ranks, in place."""
        return _DONE

    def ibroadcast(self, buf, root: int = 0) -> Pending:
        """Start copying ``buf`` of rank ``root`` into ``buf`` of every rank."""
        return _DONE

    def wait(self, pending, what: str) -> None:
        """Finish started collectives, or end the job after ``timeout`` seconds."""
        pending = [p for p in pending if p is not _DONE]
        deadline = time.monotonic() + self.timeout
        spins = 0
        while pending:
            pending = [p for p in pending if not _finished(p)]
            if not pending:
                break
            if time.monotonic() > deadline:
                self.abort(
                    f"rank {self.rank}: {what} timed out after {self.timeout:g} s waiting for "
                    f"the other ranks of {self.world_size} (one of them failed, hangs, or called "
                    "a different collective); GPUGRAD_DIST_TIMEOUT sets the limit"
                )
            spins += 1
            # Spin briefly (a small all-reduce takes microseconds), then back off: a rank
            # waiting for a slower peer must leave the CPU to it when ranks share cores.
            if spins > 200:
                time.sleep(min(1e-3, 2e-6 * (spins - 200)))

    def barrier(self, what: str = "barrier") -> None:
        self.wait([self.iallreduce(np.zeros(1))], what)

    def abort(self, message: str, code: int = 1):
        """Print ``message`` and end every process of the job."""
        _say(message)
        os._exit(code)

    def close(self) -> None:
        pass


def _finished(p: Pending) -> bool:
    if not p.test():
        return False
    if p.finish is not None:
        p.finish()
    return True


def _say(message: str) -> None:
    sys.stderr.write(f"gpugrad.distributed: {message}\n")
    sys.stderr.flush()


class Watchdog:
    """Ends the job if a blocking call (a rendezvous, an init) outlives ``timeout``."""

    def __init__(self, backend_abort, timeout: float, what: str):
        self._timer = threading.Timer(timeout, backend_abort, args=(f"{what} timed out",))
        self._timer.daemon = True

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()


def _mpi_cuda_aware(MPI) -> bool:
    """Whether this MPI reads and writes GPU memory itself (``GPUGRAD_MPI_CUDA_AWARE`` decides
    when set). Open MPI and MPICH answer through extension functions mpi4py does not wrap."""
    forced = os.environ.get("GPUGRAD_MPI_CUDA_AWARE", "").strip()
    if forced:
        return forced not in ("0", "false", "no")
    lib = ctypes.CDLL(None)
    try:  # Open MPI
        return bool(lib.MPIX_Query_cuda_support())
    except (AttributeError, OSError):
        pass
    try:  # MPICH 4: MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA = 0, &flag)
        flag = ctypes.c_int(0)
        lib.MPIX_GPU_query_support(0, ctypes.byref(flag))
        return bool(flag.value)
    except (AttributeError, OSError):
        return False


class MPIBackend(Backend):
    """MPI through mpi4py: NumPy buffers directly; CuPy buffers directly where the MPI is
    CUDA-aware, else staged through host memory (with a warning, once)."""

    name = "mpi"

    def __init__(self, info: LaunchInfo, timeout: float):
        super().__init__(info, timeout)
        if "mpi4py.MPI" not in sys.modules:
            import mpi4py

            # Only the main thread calls MPI; a lower thread level lets MPICH skip its locks.
            mpi4py.rc.thread_level = "funneled"
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        if info.launcher is not None and info.world_size != self.world_size:
            raise RuntimeError(
                f"gpugrad.distributed: the launcher says {info.world_size} processes "
                f"({info.launcher}), MPI sees {self.world_size}. The MPI backend needs an MPI "
                f"launcher (mpirun -n {info.world_size} ...); a torchrun-style launch "
                "(RANK/WORLD_SIZE) uses the NCCL backend"
            )
        self.cuda_aware = None  # probed on the first GPU buffer

    _staging_message = (
        "gpugrad.distributed: this MPI is not CUDA-aware; GPU buffers go through host memory "
        "(set GPUGRAD_MPI_CUDA_AWARE=1 if it is, or use the NCCL backend)"
    )

    def staged(self, buf) -> bool:
        if not _is_cupy(buf):
            return False
        if self.cuda_aware is None:
            self.cuda_aware = _mpi_cuda_aware(self.MPI)
        return not self.cuda_aware

    def _start(self, buf, start) -> Pending:
        if not _is_cupy(buf):
            req = start(buf)
            return Pending(req.Test)
        import cupy

        if not self.staged(buf):
            # MPI reads the memory directly: the kernels that wrote it must have finished.
            cupy.cuda.get_current_stream().synchronize()
            req = start(buf)
            return Pending(req.Test)
        host = cupy.asnumpy(buf)
        req = start(host)
        return Pending(req.Test, lambda: buf.set(host))

    def iallreduce(self, buf) -> Pending:
        if self.world_size == 1:
            return _DONE
        return self._start(buf, lambda b: self.comm.Iallreduce(self.MPI.IN_PLACE, b))

    def ibroadcast(self, buf, root: int = 0) -> Pending:
        if self.world_size == 1:
            return _DONE
        return self._start(buf, lambda b: self.comm.Ibcast(b, root=root))

    def barrier(self, what: str = "barrier") -> None:
        if self.world_size > 1:
            req = self.comm.Ibarrier()
            self.wait([Pending(req.Test)], what)

    def abort(self, message: str, code: int = 1):
        _say(message)
        # The launcher forwards our stderr through a pipe and stops forwarding once MPI_Abort
        # tears the job down: give it a moment to pass the message on first.
        time.sleep(0.5)
        # MPI_Abort makes the launcher end every rank of the job (mpirun prints its own note).
        self.comm.Abort(code)
        os._exit(code)  # not reached with a working MPI
