"""The CUDA emulator itself: the CuPy stand-in, argument checks, and that CUDA's execution rules
are enforced (barriers, warp intrinsics, alignment, bounds, thread order) on small kernels."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from emulated import built_kernels, emulated_cp  # noqa: F401  (fixtures)

import gpugrad as gg
from gpugrad import cuda_emulator
from gpugrad.cuda_emulator import (
    DeviceTrap,
    KernelFault,
    LaunchError,
    NotEmulatedError,
    OrderDependentResult,
    SyncError,
)

# One source for every small kernel below: one g++ run.
TEST_KERNELS = r"""
#line 1 "emulator_checks.cu"
extern "C" __global__ void scale(const float* x, float* y, int n, float s) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] = x[i] * s;
}
extern "C" __global__ void reverse_shared(const float* x, float* y, int barrier) {
  __shared__ float s[256];
  s[threadIdx.x] = x[threadIdx.x];
  if (barrier) __syncthreads();
  y[threadIdx.x] = s[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void reverse_dynamic(const float* x, float* y) {
  extern __shared__ float buf[];
  buf[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  y[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void divergent_barrier(float* y) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  y[threadIdx.x] = 1.0f;
}
extern "C" __global__ void early_return(float* y) {
  if (threadIdx.x == 3) return;
  __syncthreads();
  y[threadIdx.x] = 1.0f;
}
extern "C" __global__ void warp_sum(const float* x, float* y) {
  float v = x[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  y[threadIdx.x] = v;
}
extern "C" __global__ void half_warp_shuffle(const float* x, float* y) {
  float v = x[threadIdx.x];
  if ((threadIdx.x & 31) < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  y[threadIdx.x] = v;
}
extern "C" __global__ void shuffles(const int* x, int* out, int width) {
  int lane = threadIdx.x & 31, v = x[threadIdx.x];
  int* o = out + 4 * threadIdx.x;
  o[0] = __shfl_sync(0xffffffffu, v, (lane * 7 + 3) & 31, width);
  o[1] = __shfl_up_sync(0xffffffffu, v, 3, width);
  o[2] = __shfl_down_sync(0xffffffffu, v, 5, width);
  o[3] = __shfl_xor_sync(0xffffffffu, v, 9, width);
}
extern "C" __global__ void votes(const int* x, unsigned* out) {
  int p = x[threadIdx.x];
  out[3 * threadIdx.x] = __ballot_sync(0xffffffffu, p);
  out[3 * threadIdx.x + 1] = __any_sync(0xffffffffu, p);
  out[3 * threadIdx.x + 2] = __all_sync(0xffffffffu, p);
}
extern "C" __global__ void shuffle_vs_barrier(float* y) {
  float v = 1.0f;
  if (threadIdx.x == 0) v = __shfl_sync(0x3u, v, 1);
  else __syncthreads();
  y[threadIdx.x] = v;
}
extern "C" __global__ void load_float4(const float* x, float* y) {
  float4 v = reinterpret_cast<const float4*>(x)[threadIdx.x];
  y[threadIdx.x] = v.x + v.y + v.z + v.w;
}
extern "C" __global__ void write_past_end(float* y, long long n) {
  y[n + threadIdx.x] = 1.0f;
}
extern "C" __global__ void read_far(const float* x, float* y) {
  y[0] = x[-(1ll << 34)];  // 64 GiB below: unmapped
}
extern "C" __global__ void checks(float* y, int fail) {
  assert(fail == 0);
  y[threadIdx.x] = 2.0f;
}
extern "C" __global__ void atomic_sums(const float* x, float* total, unsigned long long* count) {
  atomicAdd(total, x[blockIdx.x * blockDim.x + threadIdx.x]);
  atomicAdd(count, 1ull);
}
extern "C" __global__ void __launch_bounds__(64) bounded(float* y) { y[threadIdx.x] = 1.0f; }
extern "C" __global__ void pointer_table(float* const* ptrs, int n) {
  for (int k = 0; k < n; ++k) ptrs[k][threadIdx.x] += 1.0f;
}
"""


@pytest.fixture
def mod(cp):
    return cp.RawModule(code=TEST_KERNELS, options=("-std=c++17",))


def f32(cp, values):
    return cp.asarray(np.asarray(values, np.float32))


# ----------------------------------------------------------------------------- the stand-in


def test_stand_in_answers_exactly_the_names_real_cupy_exports():
    from gpugrad.cuda_emulator.standin import _DATA, MODULES

    for name, module in MODULES.items():
        public = {k for k in vars(module) if not k.startswith("_")}
        extra = public - set(_DATA["modules"][name]) - {"special", "distributed"}
        assert not extra, f"{name} has names real CuPy lacks: {sorted(extra)}"
    standin = MODULES["cupy"]
    with pytest.raises(AttributeError, match="module 'cupy' has no attribute 'errstate'"):
        standin.errstate  # noqa: B018 - NumPy has it, CuPy does not
    with pytest.raises(NotEmulatedError, match=r"cupy\.ElementwiseKernel exists in CuPy"):
        standin.ElementwiseKernel  # noqa: B018
    assert "ElementwiseKernel" in dir(standin) and "errstate" not in dir(standin)
    assert standin.cuda.runtime.getDeviceCount() == 1
    assert MODULES["cupyx"].errstate is not None  # CuPy's errstate lives in cupyx


def test_device_arrays_are_not_numpy_arrays_and_never_convert_implicitly(cp):
    a = cp.arange(10, dtype=cp.float32)
    assert type(a).__module__ == "cupy" and not isinstance(a, np.ndarray)
    assert a.data.ptr % 256 == 0 and a[1:].data.ptr == a.data.ptr + 4
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type"):
        a + np.ones(10, np.float32)
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.exp(np.ones(3))
    total = a.sum()
    assert isinstance(total, cp.ndarray) and total.shape == () and float(total) == 45.0
    assert isinstance(a[3], cp.ndarray) and int(a[3]) == 3
    assert type(np.exp(a)) is cp.ndarray  # NumPy's ufuncs defer to the device array
    view = a.reshape(2, 5).T
    assert view.base is a and not view.flags.c_contiguous
    assert cp.shares_memory(view, a)
    empty = cp.empty(4, cp.float64)
    assert np.isnan(empty.get()).all()  # never-written memory is NaN
    assert cp.asnumpy(a).tolist() == list(range(10))
    cai = a.__cuda_array_interface__
    assert cai["data"][0] == a.data.ptr and cai["shape"] == (10,)


def test_memory_limit_raises_cupys_out_of_memory_error(cp):
    limit = cuda_emulator.configured(memory_bytes=1 << 20)
    with limit, pytest.raises(cp.cuda.memory.OutOfMemoryError) as info:
        cp.empty(1 << 20, cp.float32)
    assert info.value._size == 4 << 20


def test_dlpack_round_trip_shares_device_memory(cp):
    t = gg.tensor(np.arange(4, dtype=np.float32), device="cuda")
    back = gg.from_dlpack(cp.from_dlpack(t))
    assert back.device == "cuda:0" and back.data.data.ptr == t.data.data.ptr
    assert back.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_install_swaps_cupy_in_and_out_and_resets_gpugrads_probe(emulator_kernels, monkeypatch):
    from gpugrad import device

    sentinel = types.ModuleType("cupy")  # whatever `cupy` was before (real CuPy on a GPU box)
    monkeypatch.setitem(sys.modules, "cupy", sentinel)
    monkeypatch.setenv("GPUGRAD_DEVICE", "cpu")
    with cuda_emulator.installed() as standin:
        import cupy

        assert cupy is standin and sys.modules["cupy"] is not sentinel
        assert gg.cuda.is_available() and gg.cuda.device_count() == 1
        assert gg.tensor([1.0], device="cuda").device == "cuda:0"
    assert sys.modules["cupy"] is sentinel
    import os

    assert os.environ["GPUGRAD_DEVICE"] == "cpu"
    assert device._cupy is None  # the probe runs again, against the restored module
    monkeypatch.delitem(sys.modules, "cupy")
    cuda_emulator.reset_gpugrad_cuda_state()


# ----------------------------------------------------------------------------- arguments


def test_a_correct_launch_runs_under_every_order(cp, mod):
    x = f32(cp, np.arange(1000))
    y = cp.empty(1000, cp.float32)
    mod.get_function("scale")((3,), (128,), (x, y, np.int32(1000), np.float32(0.5)))
    assert np.array_equal(y.get(), np.arange(1000, dtype=np.float32) * 0.5)


@pytest.mark.parametrize(
    "args,match",
    [
        (lambda x, y: (x, y, np.int64(5), np.float32(1)), r"argument 2 \(int n\).*numpy\.int32"),
        (lambda x, y: (x, y, 5, np.float32(1)), r"argument 2 \(int n\).*Python int"),
        (lambda x, y: (x, y, np.int32(5), 1.0), r"argument 3 \(float s\).*8 bytes"),
        (lambda x, y: (x.astype("float64"), y, np.int32(5), np.float32(1)), r"float64 array"),
        (lambda x, y: (x, y, np.int32(5)), r"takes 4 arguments, got 3"),
        (lambda x, y: (x, np.float32(2), np.int32(5), np.float32(1)), r"takes a pointer"),
        (lambda x, y: (x, np.uint64(12345), np.int32(5), np.float32(1)), r"not a device address"),
        (lambda x, y: (x, x, y, np.float32(1)), r"device array where the kernel takes a value"),
        (lambda x, y: (x.reshape(2, 3).T, y, np.int32(5), np.float32(1)), r"non-contiguous"),
    ],
)
def test_launch_arguments_are_checked_against_the_kernels_parameters(cp, mod, args, match):
    x, y = f32(cp, np.arange(6)), cp.empty(6, cp.float32)
    with pytest.raises(LaunchError, match=match) as info:
        mod.get_function("scale")((1,), (32,), args(x, y))
    text = str(info.value)
    assert "emulator_checks.cu:1" in text  # the kernel's file:line
    assert "test_emulator.py" in text  # the Python call site
    assert "scale(const float* x, float* y, int n, float s)" in text


def test_host_arrays_and_launch_limits_fail_as_on_a_gpu(cp, mod):
    x, y = f32(cp, np.arange(6)), cp.empty(6, cp.float32)
    with pytest.raises(TypeError, match="Only numpy.ndarrays of size one"):
        mod.get_function("scale")((1,), (32,), (np.arange(6.0), y, np.int32(6), np.float32(1)))
    with pytest.raises(cp.cuda.driver.CUDADriverError, match="grid.y = 65536 exceeds 65535"):
        mod.get_function("scale")((1, 65536), (32,), (x, y, np.int32(6), np.float32(1)))
    with pytest.raises(cp.cuda.driver.CUDADriverError, match=r"__launch_bounds__\(64\)"):
        mod.get_function("bounded")((1,), (128,), (y,))
    with pytest.raises(cp.cuda.driver.CUDADriverError, match="CUDA_ERROR_NOT_FOUND"):
        mod.get_function("no_such_kernel")


def test_pointer_tables_are_followed_and_checked(cp, mod):
    a, b = cp.zeros(32, cp.float32), cp.ones(32, cp.float32)
    table = cp.asarray(np.array([a.data.ptr, b.data.ptr], np.uint64))
    mod.get_function("pointer_table")((1,), (32,), (table, np.int32(2)))
    assert a.get().tolist() == [1.0] * 32 and b.get().tolist() == [2.0] * 32
    stale = cp.asarray(np.array([a.data.ptr, 0xDEAD0000], np.uint64))
    with pytest.raises(LaunchError, match="pointer table entry 1 is 0xdead0000"):
        mod.get_function("pointer_table")((1,), (32,), (stale, np.int32(2)))


# ----------------------------------------------------------------------------- CUDA's rules


def test_a_missing_barrier_is_caught_by_running_threads_in_several_orders(cp, mod):
    x = f32(cp, np.arange(256))
    y = cp.empty(256, cp.float32)
    k = mod.get_function("reverse_shared")
    k((1,), (256,), (x, y, np.int32(1)))
    assert np.array_equal(y.get(), np.arange(256, dtype=np.float32)[::-1])
    with pytest.raises(OrderDependentResult, match="missing __syncthreads"):
        k((1,), (256,), (x, y, np.int32(0)))


def test_dynamic_shared_memory(cp, mod):
    x, y = f32(cp, np.arange(64)), cp.empty(64, cp.float32)
    mod.get_function("reverse_dynamic")((1,), (64,), (x, y), shared_mem=64 * 4)
    assert np.array_equal(y.get(), np.arange(64, dtype=np.float32)[::-1])


@pytest.mark.parametrize(
    "kernel,block,match",
    [
        ("divergent_barrier", 64, "barrier divergence"),
        ("early_return", 64, "exited"),
        ("warp_sum", 48, "do not exist in a block of 48 threads"),
        ("half_warp_shuffle", 32, "exited while lanes"),
        ("shuffle_vs_barrier", 32, "deadlock|divergence|exited"),
    ],
)
def test_barrier_and_warp_misuse_is_reported(cp, mod, kernel, block, match):
    x, y = f32(cp, np.ones(64)), cp.empty(64, cp.float32)
    args = (y,) if kernel in ("divergent_barrier", "early_return", "shuffle_vs_barrier") else (x, y)
    with pytest.raises(SyncError, match=match) as info:
        mod.get_function(kernel)((1,), (block,), args)
    assert "emulator_checks.cu:" in str(info.value)


def test_warp_sum_with_a_full_warp(cp, mod):
    x = f32(cp, np.arange(64))
    y = cp.empty(64, cp.float32)
    mod.get_function("warp_sum")((1,), (64,), (x, y))
    sums = np.arange(64, dtype=np.float32).reshape(2, 32).sum(1)
    assert np.array_equal(y.get(), np.repeat(sums, 32))


def _shuffle_model(v, width):
    lanes = np.arange(32)
    out = np.zeros((32, 4), np.int64)
    for lane in lanes:
        base = lane - lane % width
        src_idx = base + ((lane * 7 + 3) & 31) % width
        up = lane - 3 if lane % width >= 3 else lane
        down = lane + 5 if lane % width + 5 < width else lane
        x = lane ^ 9
        xor = x if x < base + width else lane
        out[lane] = (v[src_idx], v[up], v[down], v[xor])
    return out


@pytest.mark.parametrize("width", [32, 16, 8, 4])
def test_shuffles_follow_cudas_lane_rules(cp, mod, width):
    v = np.arange(100, 132, dtype=np.int32)
    out = cp.empty(128, cp.int32)
    mod.get_function("shuffles")((1,), (32,), (cp.asarray(v), out, np.int32(width)))
    assert np.array_equal(out.get().reshape(32, 4), _shuffle_model(v, width))


def test_votes(cp, mod):
    p = np.zeros(32, np.int32)
    p[[1, 5, 31]] = 1
    out = cp.empty(96, cp.uint32)
    mod.get_function("votes")((1,), (32,), (cp.asarray(p), out))
    got = out.get().reshape(32, 3)
    assert (got[:, 0] == (1 << 1 | 1 << 5 | 1 << 31)).all()
    assert (got[:, 1] == 1).all() and (got[:, 2] == 0).all()


def test_misaligned_vector_loads_are_reported(cp, mod):
    x = cp.zeros(129, cp.float32)
    y = cp.empty(32, cp.float32)
    mod.get_function("load_float4")((1,), (32,), (x[:128], y))  # aligned: fine
    with pytest.raises(KernelFault, match=r"misaligned 16-byte float4 load.*emulator_checks.cu:"):
        mod.get_function("load_float4")((1,), (32,), (x[1:], y))


@pytest.mark.parametrize("n", [64, 63])  # ends at the guard page / inside the padding
def test_writes_past_the_end_are_caught(cp, mod, n):
    y = cp.zeros(n, cp.float32)
    with pytest.raises(KernelFault, match="past the end of") as info:
        mod.get_function("write_past_end")((1,), (4,), (y, np.int64(n)))
    assert "test_emulator.py" in str(info.value)


def test_a_wild_read_faults_without_killing_the_interpreter(cp, mod):
    x, y = cp.zeros(16, cp.float32), cp.empty(1, cp.float32)
    with pytest.raises(KernelFault, match=r"invalid read of .*emulator_checks.cu:\d+"):
        mod.get_function("read_far")((1,), (1,), (x, y))
    with pytest.raises(KernelFault, match="null pointer"):
        mod.get_function("write_past_end")((1,), (1,), (None, np.int64(0)))
    mod.get_function("scale")((1,), (32,), (x, x, np.int32(16), np.float32(2)))  # still usable


def test_device_asserts_stop_the_launch(cp, mod):
    y = cp.empty(32, cp.float32)
    mod.get_function("checks")((1,), (32,), (y, np.int32(0)))
    with pytest.raises(DeviceTrap, match=r"device assert failed: fail == 0 at emulator_checks"):
        mod.get_function("checks")((1,), (32,), (y, np.int32(1)))


def test_float_atomics_may_reorder_but_integer_results_must_agree(cp, mod):
    x = cp.asarray(np.random.default_rng(0).standard_normal(1024).astype(np.float32))
    total, count = cp.zeros(1, cp.float32), cp.zeros(1, cp.uint64)
    mod.get_function("atomic_sums")((8,), (128,), (x, total, count))
    assert int(count.get()[0]) == 1024
    assert np.isclose(total.get()[0], x.get().astype(np.float64).sum(), rtol=1e-4)


def test_compile_errors_name_file_and_line(cp):
    bad = '#line 1 "broken.cu"\nextern "C" __global__ void k(float* x) { x[0] = undefined_name; }\n'
    with pytest.raises(cp.cuda.compiler.CompileException, match=r"broken\.cu:1:\d+: error"):
        cp.RawModule(code=bad).compile()


def test_a_missing_compiler_is_reported_with_the_fix():
    with cuda_emulator.configured(compiler="no-such-compiler-gpugrad"):
        reason = cuda_emulator.available()
        with pytest.raises(cuda_emulator.EmulatorUnavailable, match="install g\\+\\+"):
            cuda_emulator.build('extern "C" __global__ void k() {}')
    assert "no-such-compiler-gpugrad" in reason


def test_builds_are_cached_by_source_hash(tmp_path, emulator_kernels):
    from gpugrad.cuda_emulator import _build

    code = 'extern "C" __global__ void cached(float* x) { x[threadIdx.x] = 1; }\n'
    with cuda_emulator.configured(cache_dir=tmp_path):
        first = _build.build(code)
        stamp = first.so_path.stat().st_mtime_ns
        _build._built.pop(first.key)
        again = _build.build(code)
        other = _build.build(code, ("-DVARIANT=1",))
    assert again.key == first.key and again.so_path.stat().st_mtime_ns == stamp
    assert other.key != first.key and first.so_path.parent == tmp_path
    assert sorted(again.kernels) == ["cached"]


def test_kernel_locations_point_at_the_kernel_files(emulator_kernels):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "kernels"
    built = {b.display: b for b in emulator_kernels}
    info = built["activations.cu"].kernels["relu_fwd_f32"]
    lines = (root / "activations.cu").read_text().splitlines()
    assert lines[info.line - 1].startswith("ACTIVATION_WRAPPERS(float, f32)")
    defined = int(info.defined_at.split(":")[1])
    assert "relu_fwd_##sfx" in lines[defined - 1]
    assert info.launch_bound == 256
    assert built["bias_act.cu"].kernels["bias_act_bwd_f64"].launch_bound == 256
