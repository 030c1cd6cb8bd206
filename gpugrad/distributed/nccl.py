"""NCCL through CuPy, one process per GPU (imported only when the NCCL backend is chosen).

The communicator comes from ``cupyx.distributed.init_process_group``: under ``mpirun`` its
unique id travels over MPI; under a torchrun-style launch rank 0 serves it over TCP at
``MASTER_ADDR`` and ``GPUGRAD_DIST_PORT`` (default ``MASTER_PORT + 1``, because torchrun's own
store already listens on ``MASTER_PORT``). Collectives run on one CUDA stream of their own,
ordered after the work already queued on the current stream; ``wait`` polls an event recorded
after them, so a peer that never joins ends the job after the timeout instead of hanging.
"""

from __future__ import annotations

import contextlib
import os

from .backend import Backend, Pending, Watchdog, _is_cupy, _say
from .env import LaunchInfo

DEFAULT_PORT = 29511


def _rendezvous(info: LaunchInfo) -> tuple[str, int]:
    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = os.environ.get("GPUGRAD_DIST_PORT")
    if port is None:
        master = os.environ.get("MASTER_PORT")
        port = int(master) + 1 if master else DEFAULT_PORT
    return host, int(port)


class NCCLBackend(Backend):
    name = "nccl"

    def __init__(self, info: LaunchInfo, timeout: float):
        super().__init__(info, timeout)
        import cupy
        from cupy.cuda import nccl

        if not nccl.available:
            raise RuntimeError(
                "gpugrad.distributed: the NCCL backend needs NCCL for CuPy "
                "(pip install nvidia-nccl-cu12 or -cu13, matching the CuPy build)"
            )
        import cupyx.distributed

        self.cupy = cupy
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            raise RuntimeError("gpugrad.distributed: the NCCL backend needs a GPU; none found")
        # One process per GPU: local rank k drives device k (modulo, for oversubscribed tests).
        self.device = info.local_rank % count
        cupy.cuda.Device(self.device).use()
        host, port = _rendezvous(info)
        self._mpi = None
        use_mpi = info.launcher == "mpi"
        with Watchdog(self.abort, timeout, f"rank {self.rank}: NCCL rendezvous"):
            self.group = cupyx.distributed.init_process_group(
                self.world_size, self.rank, host=host, port=port, use_mpi=use_mpi
            )
        if use_mpi:
            from mpi4py import MPI

            self._mpi = MPI.COMM_WORLD
        self.stream = cupy.cuda.Stream(non_blocking=True)

    _staging_message = (
        "gpugrad.distributed: NCCL moves GPU memory only; host buffers are copied to the GPU "
        "and back (use the MPI backend for a model on the CPU)"
    )

    def staged(self, buf) -> bool:
        return not _is_cupy(buf)

    def _on_stream(self, buf, run) -> Pending:
        cp = self.cupy
        staged = None
        if not _is_cupy(buf):
            staged, buf = buf, cp.asarray(buf)
        # The collective must see what the current stream wrote into buf.
        ready = cp.cuda.get_current_stream().record()
        self.stream.wait_event(ready)
        run(buf)
        done = self.stream.record()
        if staged is None:
            # Later work on the current stream must see the result.
            return Pending(lambda: done.done, lambda: cp.cuda.get_current_stream().wait_event(done))
        return Pending(lambda: done.done, lambda: staged.__setitem__(..., cp.asnumpy(buf)))

    def iallreduce(self, buf) -> Pending:
        return self._on_stream(buf, lambda b: self.group.all_reduce(b, b, "sum", self.stream))

    def ibroadcast(self, buf, root: int = 0) -> Pending:
        return self._on_stream(buf, lambda b: self.group.broadcast(b, root, self.stream))

    def abort(self, message: str, code: int = 1):
        _say(message)
        comm = getattr(getattr(self, "group", None), "_comm", None)
        if comm is not None:
            # Frees peers blocked inside NCCL kernels; best effort, the process ends anyway.
            with contextlib.suppress(Exception):
                comm.abort()
        if self._mpi is not None:
            self._mpi.Abort(code)
        # torchrun's agent ends the other workers when one exits non-zero.
        os._exit(code)
