"""DataLoader: whole-array batching, with a reproducible shuffle per epoch.

The dataset's arrays are moved to the device once; each batch is one fancy-indexing call on
them, so there is no per-sample Python work. The shuffle of epoch ``e`` is a permutation drawn
from ``default_rng([seed, e])``: it depends on nothing but the seed and the epoch number, which
is what lets a resumed run see exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np

from ..device import move, parse_device
from ..tensor import Tensor


class DataLoader:
    """Iterate (x, y) tensor batches over a dataset with ``x`` and ``y`` arrays.

    ``dataset`` is an ``ArrayDataset`` or an ``(x, y)`` pair. Each ``iter()`` runs one epoch
    and then advances the epoch counter; ``set_epoch(e)`` picks the epoch explicitly.

    >>> import numpy as np
    >>> x, y = np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5)
    >>> loader = DataLoader((x, y), batch_size=2)
    >>> len(loader), [t.shape for _, t in loader]
    (3, [(2,), (2,), (1,)])
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        device: str = "cpu",
    ):
        x, y = (dataset.x, dataset.y) if hasattr(dataset, "x") else dataset
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"DataLoader: x has {len(x)} samples but y has {len(y)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = parse_device(device)
        # Without a seed, draw one now and keep it: the run is still resumable from its state.
        self.seed = int(np.random.SeedSequence().entropy % 2**63) if seed is None else int(seed)
        self.epoch = 0
        self._n = len(x)
        self._x, self._y = move(x, self.device), move(y, self.device)

    def __len__(self) -> int:
        n, b = self._n, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The sample order of an epoch (the identity when not shuffling)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return np.arange(self._n)
        return np.random.default_rng([self.seed, epoch]).permutation(self._n)

    def iter_from(self, start_batch: int = 0):
        """The current epoch's batches from ``start_batch`` on (to resume mid-epoch)."""
        order = move(self.order(), self.device) if self.shuffle else None
        self.epoch += 1
        b = self.batch_size
        for i in range(start_batch, len(self)):
            lo, hi = i * b, min((i + 1) * b, self._n)
            # Unshuffled batches are slices, i.e. views; ops never write into their inputs.
            index = slice(lo, hi) if order is None else order[lo:hi]
            yield (
                Tensor._wrap(self._x[index], self.device),
                Tensor._wrap(self._y[index], self.device),
            )

    def __iter__(self):
        return self.iter_from(0)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
