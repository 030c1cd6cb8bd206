"""The harness can fail: deliberately broken copies of the real kernels are caught.

Each case edits the text ``source(file)`` returns (the exact text the backend compiles) in one
place, builds it as a RawModule on the emulated device, launches it as the launcher would, and
expects the emulator (or the comparison with NumPy) to reject the result.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from emulated import built_kernels, close, emulated_cp, emulated_cuda  # noqa: F401

from gpugrad import cuda_emulator
from gpugrad.cuda_emulator import KernelFault, OrderDependentResult


def _break(file, old, new, count=1):
    from gpugrad.backends import cuda

    text = cuda.source(file)
    assert text.count(old) >= count, f"{file} no longer contains {old!r}: update this test"
    return text.replace(old, new, count)


BROKEN = {
    # The barrier between loading a tile into shared memory and reading it.
    "matmul without its first __syncthreads": (
        "matmul.cu",
        "        for (int q = 0; q < 4; ++q) Bs[b_r][b_c + q] = v[q];\n        __syncthreads();",
        "        for (int q = 0; q < 4; ++q) Bs[b_r][b_c + q] = v[q];",
    ),
    # The block reduction reads the per-warp partials before every warp wrote them.
    "block sum without its first __syncthreads": (
        "losses.cu",
        "  if (lane == 0) scratch[warp] = v;\n  __syncthreads();\n  v = lane < nwarps ? "
        "scratch[lane] : T(0);",
        "  if (lane == 0) scratch[warp] = v;\n  v = lane < nwarps ? scratch[lane] : T(0);",
    ),
    # The scalar tail writes one element past the end.
    "relu tail off by one": (
        "activations.cu",
        "for (i64 i = done + gg_tid(); i < n; i += gg_stride()) out[i] = f(x[i]);",
        "for (i64 i = done + gg_tid(); i <= n; i += gg_stride()) out[i] = f(x[i]);",
    ),
    # A warp reduction over 16 lanes instead of 32.
    "warp sum with the wrong shuffle width": (
        "softmax_xent.cu",
        "for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);",
        "for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, 16);",
    ),
    # Reading y[i + 1]: one element past the end for the last thread.
    "mse reading past the end": ("losses.cu", "T d = y[i] - t[i];", "T d = y[i + 1] - t[i];"),
}


@pytest.fixture(scope="module")
def broken_sources(emulator_kernels):
    from gpugrad.backends import cuda

    sources = {name: _break(*case) for name, case in BROKEN.items()}
    cuda_emulator.build_many([(s, cuda.OPTIONS) for s in sources.values()])  # in parallel
    return sources


def _kernel(cp, sources, case, name):
    from gpugrad.backends import cuda

    return cp.RawModule(code=sources[case], options=cuda.OPTIONS).get_function(name)


def test_a_missing_barrier_in_matmul_is_caught(cp, broken_sources):
    rng = np.random.default_rng(0)
    m, k, n = 70, 40, 36
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    c = cp.empty((m, n), np.float64)
    fn = _kernel(
        cp, broken_sources, "matmul without its first __syncthreads", "matmul_tiled_scalar_f64"
    )
    with pytest.raises(OrderDependentResult, match="missing __syncthreads"):
        fn((1, 2), (256,), (cp.asarray(a), cp.asarray(b), c, np.int32(m), np.int32(n), np.int32(k)))


def test_a_missing_barrier_in_the_block_reduction_is_caught(cp, broken_sources):
    n = 3000
    y, t = cp.asarray(np.linspace(-1, 1, n)), cp.zeros(n, np.float64)
    grid = math.ceil(n / 256)
    args = (
        y,
        t,
        np.int64(n),
        np.float64(1.0),
        None,
        cp.empty(n, np.float64),
        cp.zeros(grid, np.float64),
    )
    fn = _kernel(cp, broken_sources, "block sum without its first __syncthreads", "mse_fwd_f64")
    with pytest.raises(OrderDependentResult, match="partials"):
        fn((grid,), (256,), args)


def test_an_off_by_one_tail_is_caught(cp, broken_sources):
    n = 1003  # tail of 3 after the float4 body; the output ends in the padding
    x, out = cp.asarray(np.ones(n, np.float32)), cp.empty(n, np.float32)
    fn = _kernel(cp, broken_sources, "relu tail off by one", "relu_fwd_f32")
    with pytest.raises(KernelFault, match=r"past the end of .*float32 array of shape \(1003,\)"):
        fn((1,), (256,), (x, out, np.int64(n)))


def test_a_wrong_shuffle_width_is_caught_by_the_reference(cp, broken_sources):
    from gpugrad import ops

    rows, c = 5, 100
    x = np.random.default_rng(1).standard_normal((rows, c)).astype(np.float32)
    dout = np.ones((rows, c), np.float32)
    out = ops.softmax.fwd(np, x.astype(np.float64), axis=-1).astype(np.float32)
    dx = cp.empty((rows, c), np.float32)
    fn = _kernel(
        cp, broken_sources, "warp sum with the wrong shuffle width", "softmax_bwd_warp_f32"
    )
    fn((1,), (256,), (cp.asarray(dout), cp.asarray(out), np.int64(rows), np.int64(c), dx))
    (expect,) = ops.softmax.bwd(np, dout.astype(np.float64), out.astype(np.float64), -1)
    with pytest.raises(AssertionError, match="mismatch"):
        close(dx, expect, "float32", "softmax_bwd_warp with a 16-lane sum")


def test_an_out_of_bounds_read_is_caught(cp, broken_sources):
    n = 64  # 256 bytes: the array ends exactly at the guard page
    y, t = cp.asarray(np.ones(n, np.float32)), cp.zeros(n, np.float32)
    args = (
        y,
        t,
        np.int64(n),
        np.float32(1.0),
        None,
        cp.empty(n, np.float32),
        cp.zeros(1, np.float64),
    )
    fn = _kernel(cp, broken_sources, "mse reading past the end", "mse_fwd_f32")
    with pytest.raises(KernelFault, match=r"invalid read of .*0 bytes past the end.*losses.cu:"):
        fn((1,), (256,), args)
