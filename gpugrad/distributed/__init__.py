"""Data-parallel training over processes and GPUs, on MPI (mpi4py) or NCCL (CuPy).

Launch one process per CPU socket or GPU with ``mpirun -n N`` (or a torchrun-style launcher
that sets ``RANK``/``WORLD_SIZE``), then in each:

>>> import numpy as np
>>> import gpugrad.distributed as dist
>>> from gpugrad import nn, optim
>>> be = dist.init()                             # "mpi" or "nccl" under a launcher
>>> model = nn.Linear(4, 2)
>>> dist.broadcast_parameters(model)             # every rank starts from rank 0's weights
>>> opt = dist.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1))
>>> x, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int64)
>>> loader = dist.DistributedLoader((x, y), batch_size=8, shuffle=True, seed=0)
>>> len(loader), dist.rank(), dist.world_size()  # a job of one gets the whole batch
(1, 0, 1)
>>> dist.shutdown()

``gpugrad train --distributed`` does all of this for the training command.
"""

from .comm import (
    BACKENDS,
    all_reduce,
    backend,
    barrier,
    broadcast,
    broadcast_object,
    init,
    is_initialized,
    is_main,
    local_rank,
    rank,
    shutdown,
    world_size,
)
from .env import LaunchInfo, launch_info, timeout_s
from .optimizer import DistributedOptimizer, broadcast_buffers, broadcast_parameters
from .sampler import DistributedLoader

__all__ = [
    "BACKENDS",
    "DistributedLoader",
    "DistributedOptimizer",
    "LaunchInfo",
    "all_reduce",
    "backend",
    "barrier",
    "broadcast",
    "broadcast_buffers",
    "broadcast_object",
    "broadcast_parameters",
    "init",
    "is_initialized",
    "is_main",
    "launch_info",
    "local_rank",
    "rank",
    "shutdown",
    "timeout_s",
    "world_size",
]
