"""Multi-tensor optimizer steps on the GPU: every parameter of a model in one kernel launch.

The kernels in ``kernels/optim.cu`` apply ``gpugrad.optim_rules.sgd`` / ``adam`` (the rules the
reference step and the Numba kernels run) to lists of parameters described by device tables of
pointers and a chunk table; the hyperparameters travel as one float64 row per parameter in the
column order of ``optim_rules.SGD_COLUMNS`` / ``ADAM_COLUMNS``, as on the CPU.
"""

from __future__ import annotations

import numpy as np

from ...optim_rules import ADAM_COLUMNS, SGD_COLUMNS
from .runtime import _SUFFIX, BLOCK, _cp, contiguous, launch, sm_count

CHUNK = 65536  # elements per block in the multi-tensor kernels
_tables: dict[tuple, tuple] = {}  # parameter layout -> device metadata (a few entries)


def _pointer_table(groups):
    """Device pointer arrays per group (0 for a None entry), sizes and the chunk table."""
    cp = _cp()
    key = tuple((0, 0) if a is None else (a.data.ptr, a.size) for g in groups for a in g)
    hit = _tables.get(key)
    if hit is not None:
        return hit
    sizes = [a.size for a in groups[0]]
    chunk_tensor, chunk_start = [], []
    for t, size in enumerate(sizes):
        for start in range(0, size, CHUNK):
            chunk_tensor.append(t)
            chunk_start.append(start)
    ptrs = [
        cp.asarray(np.array([0 if a is None else a.data.ptr for a in g], np.uint64)) for g in groups
    ]
    table = (
        ptrs,
        cp.asarray(np.array(sizes, np.int64)),
        cp.asarray(np.array(chunk_tensor, np.int32)),
        cp.asarray(np.array(chunk_start, np.int64)),
        len(chunk_tensor),
    )
    if len(_tables) >= 8:
        _tables.clear()
    _tables[key] = table
    return table


def _check_groups(name, groups, hp, columns, required):
    """Validate the lists of a multi-tensor step; return (dtype or None when empty, hp)."""
    params = groups[0]
    if not params:
        return None, None
    dtype = params[0].dtype
    if dtype not in _SUFFIX:
        raise TypeError(f"{name}: parameters must be float32 or float64, got {dtype}")
    for gi, g in enumerate(groups):
        if len(g) != len(params):
            raise ValueError(f"{name}: {len(params)} parameters but a list of {len(g)} arrays")
        for p, a in zip(params, g, strict=True):
            if a is None and gi < required:
                raise ValueError(f"{name}: list {gi} has a missing array")
            if a is not None and (
                a.shape != p.shape or a.dtype != dtype or not a.flags.c_contiguous
            ):
                raise ValueError(
                    f"{name}: every array must be contiguous {dtype} of its parameter's shape; "
                    f"got {a.shape} {a.dtype} for a parameter {p.shape}"
                )
    if np.shape(hp) != (len(params), len(columns)):
        raise ValueError(f"{name}: hp must be ({len(params)}, {len(columns)}), got {np.shape(hp)}")
    return dtype, _device_hp(name, hp)


_hp_cache: dict = {}  # (kernel name, GPU) -> (host rows, device copy) of the last launch


def _device_hp(name, hp):
    """The hyperparameter rows on the GPU, uploaded only when they changed since the last
    launch: a steady SGD step then copies nothing from the host, which is also what lets
    gg.cuda.graph capture it (a host-to-device copy cannot be captured)."""
    if not isinstance(hp, np.ndarray):
        return contiguous(_cp().asarray(hp, dtype=np.float64))
    key = (name, _cp().cuda.Device().id)
    hit = _hp_cache.get(key)
    if hit is not None and hit[0].shape == hp.shape and np.array_equal(hit[0], hp):
        return hit[1]
    device = contiguous(_cp().asarray(hp, dtype=np.float64))
    _hp_cache[key] = (np.array(hp, np.float64), device)
    return device


def _step(name, groups, hp, columns, required):
    dtype, hp = _check_groups(name, groups, hp, columns, required)
    if dtype is None:
        return
    ptrs, sizes, chunk_tensor, chunk_start, n_chunks = _pointer_table(groups)
    if n_chunks == 0:
        return
    args = (*ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks), np.int64(CHUNK))
    args += (hp, np.int32(len(columns)))
    grid = min(n_chunks, sm_count() * 32)
    launch("optim.cu", name, dtype, (grid,), (BLOCK,), args)


def sgd_step(params, grads, bufs, hp) -> None:
    """PyTorch's SGD over every parameter in one launch, in place on params and bufs.

    params, grads, bufs: lists of contiguous CuPy arrays (a buf may be None where that row's
    momentum is 0); hp: (len(params), len(SGD_COLUMNS)) float64 rows.
    """
    _step("sgd_step", [params, grads, bufs], hp, SGD_COLUMNS, required=2)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hp) -> None:
    """PyTorch's Adam / AdamW over every parameter in one launch, in place.

    max_exp_avg_sqs entries may be None where amsgrad is off; hp rows follow ADAM_COLUMNS.
    """
    groups = [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs]
    _step("adam_step", groups, hp, ADAM_COLUMNS, required=4)
