"""DistributedLoader: each rank's share of every batch of an ordinary DataLoader.

``batch_size`` is the global batch: the samples one optimizer step sees, summed over ranks.
Epoch ``e`` uses the same permutation ``default_rng([seed, e])`` as ``DataLoader`` on every rank,
cuts it into the same global batches, and gives rank ``r`` of ``N`` the ``r``-th of ``N``
near-equal contiguous slices of each. Every rank therefore runs the same number of steps, and
since ``DistributedOptimizer`` weighs each rank's gradient by its share of the batch, a step
averages exactly the gradient that one process would compute on the whole batch: the run
follows the single-process trajectory whatever ``N`` is, which is what lets a checkpoint resume
with a different number of processes.

A final partial batch with fewer samples than ranks is dropped on every rank (a rank with no
sample would have no loss to differentiate); with ``drop_last`` every partial batch is.
"""

from __future__ import annotations

import numpy as np

from ..data import DataLoader
from ..device import move
from ..tensor import Tensor
from . import comm


class DistributedLoader(DataLoader):
    """A DataLoader over this rank's slices of each global batch (see the module docstring).

    ``rank`` and ``world_size`` default to the initialized job's. A ``seed`` of None is drawn on
    rank 0 and broadcast, so that every rank shuffles alike.

    >>> import numpy as np
    >>> x, y = np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10)
    >>> [b.numpy().tolist() for _, b in DistributedLoader((x, y), 4, rank=1, world_size=2)]
    [[2, 3], [6, 7], [9]]
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        device: str = "cpu",
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.rank = comm.rank() if rank is None else int(rank)
        self.world_size = comm.world_size() if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"DistributedLoader: rank {rank} is not in [0, {world_size})")
        if isinstance(batch_size, int) and batch_size < self.world_size:
            raise ValueError(
                f"DistributedLoader: the global batch size {batch_size} is smaller than the "
                f"world size {self.world_size}; some ranks would get no sample"
            )
        if seed is None and rank is None and self.world_size > 1:
            seed = comm.broadcast_int(int(np.random.SeedSequence().entropy % 2**63))
        super().__init__(dataset, batch_size, shuffle, seed, drop_last, device)

    def __len__(self) -> int:
        n, b = self._n, self.batch_size
        full, rest = divmod(n, b)
        return full + (rest > 0 and rest >= self.world_size and not self.drop_last)

    def global_batch_size(self, index: int) -> int:
        """Samples in global batch ``index`` (over all ranks)."""
        return min(self.batch_size, self._n - index * self.batch_size)

    def _shard(self, index: int) -> tuple[int, int]:
        """Positions in the epoch's order of this rank's slice of global batch ``index``."""
        lo, m = index * self.batch_size, self.global_batch_size(index)
        r, n = self.rank, self.world_size
        return lo + r * m // n, lo + (r + 1) * m // n

    def iter_from(self, start_batch: int = 0):
        """This rank's slices of the current epoch's batches from ``start_batch`` on."""
        order = move(self.order(), self.device) if self.shuffle else None
        self.epoch += 1
        for i in range(start_batch, len(self)):
            lo, hi = self._shard(i)
            index = slice(lo, hi) if order is None else order[lo:hi]
            yield (
                Tensor._wrap(self._x[index], self.device),
                Tensor._wrap(self._y[index], self.device),
            )
