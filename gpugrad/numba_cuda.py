"""Numba CUDA versions of two kernels: a tiled GEMM and the fused softmax cross-entropy.

These are the Python-level counterparts of ``kernels/matmul.cu`` and ``kernels/softmax_xent.cu``,
written with ``numba.cuda`` so they can be read, stepped through and tested without a GPU in
Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, which must be set before Numba is imported).
They are not on gpugrad's hot path; the CuPy launchers in ``backends/cuda.py`` are.

Numba 0.68 still ships its built-in (deprecated) CUDA target, which is enough for the simulator;
on a GPU install ``numba-cuda`` (NVIDIA's maintained target, ``pip install "numba-cuda[cu13]"``),
which takes over ``numba.cuda`` when present. ``tests/test_numba_cuda_sim.py`` runs both kernels
in the simulator against NumPy.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

TILE = 16  # a TILE x TILE block of threads computes a TILE x TILE tile of C


def _gemm_kernel(dtype):
    @cuda.jit
    def gemm(a, b, c):
        """C = A @ B: shared-memory tiles of A and B, each thread one element of C."""
        sa = cuda.shared.array((TILE, TILE), dtype)
        sb = cuda.shared.array((TILE, TILE), dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        m, k = a.shape
        n = b.shape[1]
        acc = dtype(0)
        for k0 in range(0, k, TILE):
            # Zero-pad past the edges so the inner loop needs no bounds checks.
            sa[ty, tx] = a[row, k0 + tx] if row < m and k0 + tx < k else dtype(0)
            sb[ty, tx] = b[k0 + ty, col] if k0 + ty < k and col < n else dtype(0)
            cuda.syncthreads()
            for kk in range(TILE):
                acc += sa[ty, kk] * sb[kk, tx]
            cuda.syncthreads()
        if row < m and col < n:
            c[row, col] = acc

    return gemm


_GEMM = {np.dtype(np.float32): _gemm_kernel(float32), np.dtype(np.float64): _gemm_kernel(float64)}

XENT_THREADS = 32  # threads per row: one warp, as softmax_xent.cu's narrow-row version


def _xent_kernel(dtype):
    @cuda.jit
    def softmax_xent(logits, targets, ignore_index, scale, per_row, dlogits):
        """A block of XENT_THREADS per row: max, sum of exp, then loss and (p - onehot) * scale."""
        buf = cuda.shared.array(XENT_THREADS, dtype)
        i = cuda.blockIdx.x
        t = cuda.threadIdx.x
        c = logits.shape[1]
        if i >= logits.shape[0]:
            return
        m = -math.inf
        for j in range(t, c, XENT_THREADS):
            m = max(m, logits[i, j])
        buf[t] = m
        cuda.syncthreads()
        step = XENT_THREADS // 2
        while step > 0:  # tree reduction in shared memory
            if t < step:
                buf[t] = max(buf[t], buf[t + step])
            cuda.syncthreads()
            step //= 2
        m = buf[0]
        cuda.syncthreads()
        s = dtype(0)
        for j in range(t, c, XENT_THREADS):
            s += math.exp(logits[i, j] - m)
        buf[t] = s
        cuda.syncthreads()
        step = XENT_THREADS // 2
        while step > 0:
            if t < step:
                buf[t] += buf[t + step]
            cuda.syncthreads()
            step //= 2
        s = buf[0]
        target = targets[i]
        valid = target != ignore_index
        inv = scale / s if valid else dtype(0)
        for j in range(t, c, XENT_THREADS):
            g = math.exp(logits[i, j] - m) * inv
            if valid and j == target:
                g -= scale
            dlogits[i, j] = g
        if t == 0:
            per_row[i] = math.log(s) - (logits[i, target] - m) if valid else dtype(0)

    return softmax_xent


_XENT = {np.dtype(np.float32): _xent_kernel(float32), np.dtype(np.float64): _xent_kernel(float64)}


def _check_dtype(name, *arrays):
    dtype = np.dtype(arrays[0].dtype)
    if dtype not in _GEMM or any(np.dtype(a.dtype) != dtype for a in arrays):
        raise TypeError(
            f"{name}: float32 or float64 arrays of one dtype, got {[str(a.dtype) for a in arrays]}"
        )
    return dtype


def matmul(a, b):
    """A (M, K) @ B (K, N) with the tiled Numba kernel; NumPy in, NumPy out."""
    dtype = _check_dtype("matmul", a, b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not fit (M, K) @ (K, N)")
    m, n = a.shape[0], b.shape[1]
    d_a = cuda.to_device(np.ascontiguousarray(a))
    d_b = cuda.to_device(np.ascontiguousarray(b))
    d_c = cuda.device_array((m, n), dtype)
    if m and n:
        grid = (math.ceil(n / TILE), math.ceil(m / TILE))
        _GEMM[dtype][grid, (TILE, TILE)](d_a, d_b, d_c)
    return d_c.copy_to_host()


def cross_entropy(logits, targets, ignore_index=-100, reduction="mean"):
    """Fused softmax cross-entropy: (loss, dlogits), the results of ``fused.cross_entropy``."""
    dtype = _check_dtype("cross_entropy", logits)
    n, c = logits.shape
    targets = np.ascontiguousarray(targets, dtype=np.int64)
    count = int(np.count_nonzero(targets != ignore_index))
    scale = 1.0 if reduction != "mean" else (1.0 / count if count else 0.0)
    d_logits = cuda.to_device(np.ascontiguousarray(logits))
    d_per_row = cuda.device_array(n, dtype)
    d_dlogits = cuda.device_array((n, c), dtype)
    if n:
        _XENT[dtype][n, XENT_THREADS](
            d_logits, cuda.to_device(targets), ignore_index, dtype.type(scale), d_per_row, d_dlogits
        )
    per_row = d_per_row.copy_to_host()
    if reduction == "none":
        loss = per_row
    elif reduction == "sum":
        loss = per_row.sum(dtype=np.float64).astype(dtype)
    else:
        loss = np.asarray(per_row.sum(dtype=np.float64) / count if count else np.nan, dtype)
    return loss, d_dlogits.copy_to_host()
