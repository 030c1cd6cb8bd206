"""Multi-tensor optimizer steps on the GPU: every parameter of a model in one kernel launch.

The kernels in ``kernels/optim.cu`` apply ``gpugrad.optim_rules.sgd`` / ``adam`` / ``rmsprop``
/ ``adagrad`` (the rules the reference step and the Numba kernels run) to lists of parameters
described by device tables of pointers and a chunk table; the hyperparameters travel as one
float64 row per parameter in the column order of ``optim_rules.COLUMNS``, as on the CPU.

The same tables serve gradient clipping (``nn.utils.clip_grad_norm_`` / ``clip_grad_value_``):
one launch computes a float64 partial per chunk (no atomics, so the norm is the same every run)
and one launch scales or clamps every gradient. Reading the gradients through the pointer table
costs one pass over them; concatenating them for a single CuPy reduction would copy them all
first (a read and a write more) and still need the scaling launch per tensor.
"""

from __future__ import annotations

import numpy as np

from ...optim_rules import ADAGRAD_COLUMNS, ADAM_COLUMNS, RMSPROP_COLUMNS, SGD_COLUMNS
from .runtime import _SUFFIX, BLOCK, _cp, contiguous, launch, scalar, sm_count

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


def _check_arrays(name, groups, required):
    """Validate the lists of a multi-tensor launch; return their dtype (None when empty)."""
    params = groups[0]
    if not params:
        return None
    dtype = params[0].dtype
    if dtype not in _SUFFIX:
        raise TypeError(f"{name}: arrays must be float32 or float64, got {dtype}")
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
    return dtype


def _check_groups(name, groups, hp, columns, required):
    """Validate the lists of a multi-tensor step; return (dtype or None when empty, hp)."""
    dtype = _check_arrays(name, groups, required)
    if dtype is None:
        return None, None
    if np.shape(hp) != (len(groups[0]), len(columns)):
        raise ValueError(
            f"{name}: hp must be ({len(groups[0])}, {len(columns)}), got {np.shape(hp)}"
        )
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


def rmsprop_step(params, grads, square_avgs, grad_avgs, bufs, hp) -> None:
    """PyTorch's RMSprop over every parameter in one launch, in place.

    grad_avgs / bufs entries may be None where that row is not centered / has no momentum; hp
    rows follow RMSPROP_COLUMNS.
    """
    groups = [params, grads, square_avgs, grad_avgs, bufs]
    _step("rmsprop_step", groups, hp, RMSPROP_COLUMNS, required=3)


def adagrad_step(params, grads, sums, hp) -> None:
    """PyTorch's Adagrad over every parameter in one launch, in place; hp rows follow
    ADAGRAD_COLUMNS (the accumulator starts at initial_accumulator_value on step 1)."""
    _step("adagrad_step", [params, grads, sums], hp, ADAGRAD_COLUMNS, required=3)


# ----------------------------------------------------------------------------- gradient clipping


def _grad_table(name, grads):
    """(dtype, pointer table) for a list of contiguous gradients of one dtype on this GPU."""
    dtype = _check_arrays(name, [grads], required=1)
    return dtype, (_pointer_table([grads]) if dtype is not None else None)


def grad_norm_partial(grads, norm_type: float):
    """A 0-d float64 CuPy array: sum of |g|^norm_type over every gradient, or max |g| when
    norm_type is inf (NaN propagates). Stays on the GPU (no synchronisation)."""
    cp = _cp()
    dtype, table = _grad_table("grad_norm_partials", grads)
    if table is None or table[-1] == 0:
        return cp.zeros((), np.float64)
    (ptrs,), sizes, chunk_tensor, chunk_start, n_chunks = table
    partials = cp.empty(n_chunks, np.float64)
    grid = min(n_chunks, sm_count() * 32)
    args = (ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks), np.int64(CHUNK))
    args += (np.float64(norm_type), partials)
    launch("optim.cu", "grad_norm_partials", dtype, (grid,), (BLOCK,), args)
    return partials.max() if np.isinf(norm_type) else partials.sum()


def grad_scale(grads, coef) -> None:
    """g *= coef for every gradient in one launch; ``coef`` is a float64 CuPy scalar array on
    this GPU (read by the kernel, so no synchronisation), rounded to the gradients' dtype."""
    dtype, table = _grad_table("grad_scale", grads)
    if table is None or table[-1] == 0:
        return
    (ptrs,), sizes, chunk_tensor, chunk_start, n_chunks = table
    coef = contiguous(_cp().asarray(coef, dtype=np.float64).reshape(1))
    args = (ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks), np.int64(CHUNK), coef)
    launch("optim.cu", "grad_scale", dtype, (min(n_chunks, sm_count() * 32),), (BLOCK,), args)


def grad_clamp(grads, clip_value: float) -> None:
    """g = clamp(g, -clip_value, clip_value) for every gradient in one launch (NaN stays)."""
    dtype, table = _grad_table("grad_clamp", grads)
    if table is None or table[-1] == 0:
        return
    (ptrs,), sizes, chunk_tensor, chunk_start, n_chunks = table
    args = (ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks), np.int64(CHUNK))
    args += (scalar(dtype, clip_value),)
    launch("optim.cu", "grad_clamp", dtype, (min(n_chunks, sm_count() * 32),), (BLOCK,), args)
