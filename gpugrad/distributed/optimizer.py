"""broadcast_parameters and DistributedOptimizer: data parallelism in two calls
(``broadcast_buffers`` a third, for models with BatchNorm).

Every rank holds the whole model. ``broadcast_parameters`` makes the copies equal once;
after each backward, ``DistributedOptimizer`` replaces every rank's gradient with the weighted
average over ranks, so the wrapped optimizer takes the same step everywhere and the copies
stay equal without ever being sent again.

The average travels as one flat buffer per (device, dtype) — for an ordinary model, one
buffer — cut into buckets of at most ``bucket_mb``. Each bucket's all-reduce starts, without
blocking, as soon as the bucket is packed, so packing the next bucket overlaps the transfer of
the previous ones; with the default 25 MB an MLP of a few million parameters is one bucket and
one all-reduce per step. Starting buckets *during* backward (as PyTorch's DDP does) would need
the engine to say when a parameter's gradient is final, i.e. when its last use has been
differentiated; gpugrad's tape has no such hook yet, so communication starts after backward.

Each buffer carries one count per parameter, "ranks that produced a gradient": a parameter no
rank used keeps ``grad = None`` (the optimizer skips it, as it would in one process), one used
by some ranks only is averaged with zeros from the others.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..device import xp_for
from ..engine import enable_grad, no_grad
from ..optim.optimizer import Optimizer
from ..tensor import Tensor
from . import comm


def _params_of(model_or_params) -> list[tuple[str, Tensor]]:
    if hasattr(model_or_params, "named_parameters"):
        return list(model_or_params.named_parameters())
    return [(str(i), p) for i, p in enumerate(model_or_params)]


def _signature(named) -> str:
    return ";".join(f"{n}:{tuple(p.shape)}:{p.dtype}" for n, p in named)


def check_same(description: str, what: str) -> None:
    """Raise on every rank if ``description`` differs between ranks, naming the odd ones."""
    n = comm.world_size()
    if n == 1:
        return
    digest = hashlib.blake2b(description.encode(), digest_size=6).digest()
    votes = np.zeros(n, np.float64)  # 48-bit hashes are exact in float64
    votes[comm.rank()] = int.from_bytes(digest, "little")
    comm.all_reduce(votes, what=f"{what} (layout check)")
    odd = [r for r in range(n) if votes[r] != votes[0]]
    if odd:
        shown = description if len(description) < 300 else description[:300] + "..."
        raise RuntimeError(
            f"{what}: rank(s) {odd} hold a different set of parameters than rank 0 (names, "
            f"shapes and dtypes must match on every rank); rank {comm.rank()} has {shown}"
        )


def broadcast_parameters(model, root: int = 0) -> None:
    """Copy the parameters of rank ``root`` into every rank's model (or list of tensors), in
    place; raises on every rank if the models differ in names, shapes or dtypes.

    >>> import gpugrad.distributed as dist
    >>> from gpugrad import nn
    >>> dist.broadcast_parameters(nn.Linear(3, 2))  # a job of one: nothing to do
    """
    named = _params_of(model)
    if comm.world_size() == 1:
        return
    _broadcast_in_place(named, root, "broadcast_parameters")


def broadcast_buffers(model, root: int = 0) -> None:
    """Copy the buffers of rank ``root``'s model (BatchNorm's running statistics) into every
    rank's, in place, as PyTorch's DDP does with ``broadcast_buffers=True``.

    Gradients are averaged, so parameters stay equal on every rank; buffers that a forward
    pass updates from its batch do not, since each rank sees its own share of the batch. Call
    this before evaluating, so that every rank evaluates (and saves) the same model.

    >>> import gpugrad.distributed as dist
    >>> from gpugrad import nn
    >>> dist.broadcast_buffers(nn.BatchNorm1d(3))  # a job of one: nothing to do
    """
    named = [(n, b) for n, b in model.named_buffers() if b is not None]
    if comm.world_size() == 1 or not named:
        return
    _broadcast_in_place(named, root, "broadcast_buffers")


def _broadcast_in_place(named, root, what) -> None:
    """Overwrite every rank's tensors with rank ``root``'s (after checking that the ranks hold
    the same names, shapes and dtypes), bumping their versions."""
    check_same(_signature(named), what)
    be = comm.backend()
    pending, copies = [], []
    for _, t in named:
        data = t.data
        buf = data if data.flags.c_contiguous else data.copy()
        pending.append(be.ibroadcast(buf.reshape(-1), root))  # a view, 0-d arrays included
        if buf is not data:
            copies.append((t, buf))
    be.wait(pending, f"rank {be.rank}: {what} ({len(named)} tensors)")
    for t, buf in copies:
        t.data[...] = buf
    for _, t in named:
        t._version[0] += 1  # the values changed under any graph that saved them


class _Bucket:
    __slots__ = ("lo", "hi", "items")

    def __init__(self, lo, hi, items):
        self.lo, self.hi, self.items = lo, hi, items  # items: (param index, offset, size)


class _Flat:
    """One (device, dtype)'s flat buffer: gradients, then one count per parameter, then flags."""

    def __init__(self, params, indices, extra: int, bucket_bytes: int):
        first = params[indices[0]]
        self.xp = xp_for(first.device)
        self.indices = indices
        sizes = [params[i].size for i in indices]
        self.grad_size = int(sum(sizes))
        self.count_at = self.grad_size
        self.extra_at = self.grad_size + len(indices)
        self.buf = self.xp.zeros(self.extra_at + extra, first.dtype)
        itemsize = self.buf.dtype.itemsize
        self.buckets, items, lo, offset = [], [], 0, 0
        for k, (i, size) in enumerate(zip(indices, sizes, strict=True)):
            if items and (offset + size - lo) * itemsize > bucket_bytes:
                self.buckets.append(_Bucket(lo, offset, items))
                items, lo = [], offset
            items.append((k, i, offset, size))
            offset += size
        # The counts and flags ride in the last bucket.
        self.buckets.append(_Bucket(lo, self.buf.size, items))


class DistributedOptimizer(Optimizer):
    """Wrap ``optimizer`` so that ``step()`` first averages the gradients over all ranks.

    ``step(weight=w)``: this rank's share of the global batch (its samples over all ranks'
    samples), for batches that are not split evenly; the default ``1 / world_size`` fits equal
    shards. With losses that are means over the batch, the averaged gradient then equals the
    gradient of the whole batch on one process. ``synchronize()`` averages without stepping
    (to look at or clip the averaged gradients); the next ``step()`` then does not average
    again. Everything else (``param_groups``, ``zero_grad``, ``state_dict``, schedulers) is the
    wrapped optimizer's.

    >>> import gpugrad as gg
    >>> from gpugrad import nn, optim
    >>> from gpugrad.distributed import DistributedOptimizer
    >>> model = nn.Linear(3, 1)
    >>> opt = DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1))
    >>> model(gg.ones(2, 3)).sum().backward(); opt.step()
    """

    # An Optimizer (schedulers check) whose state all lives in the wrapped one: the base
    # __init__ is deliberately not called, and attribute lookups fall through to ``optimizer``.
    def __init__(self, optimizer, bucket_mb: float = 25.0):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"DistributedOptimizer wraps an Optimizer, got {type(optimizer)}")
        if bucket_mb <= 0:
            raise ValueError(f"DistributedOptimizer: bucket_mb must be positive, got {bucket_mb}")
        self.optimizer = optimizer
        self.bucket_bytes = int(bucket_mb * 2**20)
        self._flats: list[_Flat] | None = None
        self._key = None
        self._extra = 0
        self._synchronized = False

    # The wrapped optimizer's face.
    @property
    def param_groups(self):
        return self.optimizer.param_groups

    @property
    def state(self):
        return self.optimizer.state

    @property
    def defaults(self):
        return self.optimizer.defaults

    def __getattr__(self, name):
        if name == "optimizer":  # before __init__ set it (copy, pickle)
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def add_param_group(self, group: dict) -> None:
        self.optimizer.add_param_group(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._synchronized = False
        self.optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"DistributedOptimizer({self.optimizer!r}, world_size={comm.world_size()})"

    # The averaging.
    def _params(self) -> list[Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _layout(self, params, extra: int) -> list[_Flat]:
        key = (tuple(id(p) for p in params), tuple(id(p.data) for p in params), extra)
        if self._flats is None or key != self._key:
            named = [(str(i), p) for i, p in enumerate(params)]
            check_same(_signature(named) + f";flags:{extra}", "DistributedOptimizer.synchronize")
            groups: dict = {}
            # Last parameters first: backward finishes their gradients first, so this is the
            # order in which buckets would fill if communication ever starts inside backward.
            for i in reversed(range(len(params))):
                p = params[i]
                groups.setdefault((p.device, np.dtype(p.dtype)), []).append(i)
            flats = [
                _Flat(params, idx, extra if k == 0 else 0, self.bucket_bytes)
                for k, idx in enumerate(groups.values())
            ]
            be = comm.backend()
            if be is not None:
                for f in flats:
                    be.warn_if_staged(f.buf)
            self._flats, self._key, self._extra = flats, key, extra
        return self._flats

    def synchronize(self, weight: float | None = None, flags=()) -> tuple[float, ...]:
        """Replace every gradient by the weighted sum over ranks (the average by default).

        ``flags``: numbers to sum over ranks on the same trip (a stop request, a count);
        returns their sums. Costs one all-reduce per bucket and nothing more.
        """
        n = comm.world_size()
        self._synchronized = True
        if n == 1 and (weight is None or weight == 1.0):
            return tuple(float(f) for f in flags)
        weight = 1.0 / n if weight is None else float(weight)
        params = self._params()
        flats = self._layout(params, len(flags))
        be = comm.backend() or comm._backend()
        pending = []
        with no_grad():
            for f in flats:
                buf = f.buf
                if f.extra_at < buf.size:
                    buf[f.extra_at :] = f.xp.asarray(flags, buf.dtype)
                for bucket in f.buckets:
                    for k, i, offset, size in bucket.items:
                        p = params[i]
                        view = buf[offset : offset + size]
                        if p.grad is None:
                            view[...] = 0
                            buf[f.count_at + k] = 0
                        else:
                            # Scale while packing: one pass over the gradient, not two.
                            f.xp.multiply(p.grad.data.reshape(-1), weight, out=view)
                            buf[f.count_at + k] = 1
                    pending.append(be.iallreduce(buf[bucket.lo : bucket.hi]))
            total = sum(p.size for p in params)
            be.wait(
                pending,
                f"rank {be.rank}: DistributedOptimizer all-reduce of {total:,} gradients "
                f"in {len(pending)} bucket(s)",
            )
            sums = ()
            for f in flats:
                counts = f.buf[f.count_at : f.extra_at].tolist()
                for k, i, offset, size in (item for b in f.buckets for item in b.items):
                    p = params[i]
                    if counts[k] == 0:
                        p.grad = None
                        continue
                    avg = f.buf[offset : offset + size].reshape(p.shape)
                    g = p.grad
                    if g is not None and g.data.shape == p.shape and g.data.flags.writeable:
                        g.data[...] = avg
                    else:
                        p.grad = Tensor._wrap(avg.copy(), p.device)
                if f.extra_at < f.buf.size:
                    sums = tuple(float(v) for v in f.buf[f.extra_at :].tolist())
        return sums

    def step(self, closure=None, *, weight: float | None = None):
        """Average the gradients (unless ``synchronize()`` already did), then step."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        if not self._synchronized:
            self.synchronize(weight)
        self._synchronized = False
        self.optimizer.step()
        return loss
