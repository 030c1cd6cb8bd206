"""bench/gpu_bench.py's arithmetic, checked on the CPU: each case's bytes come from the arrays
a call reads and writes, and each PyTorch twin computes what the kernel's reference does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import gpu_cases  # noqa: E402

N = gpu_cases.SIZES["test"]["n"]
ROWS, COLS = gpu_cases.SIZES["test"]["rows"]
CASES = list(gpu_cases.cases(np, size="test"))


def _expected_bytes(case) -> int:
    """The traffic of each case worked out by hand: float32 is 4 bytes, int64 targets 8."""
    shape = case.args(0)[0].shape if not isinstance(case.args(0)[0], list) else None
    if case.family == "activations":
        return (8 if case.name.endswith("_fwd") else 12) * N  # in + out; dout + saved + dx
    if case.name.startswith("bias_act_fwd"):
        return 8 * ROWS * COLS + 4 * COLS  # z, b in; out
    if case.name.startswith("bias_act_bwd"):
        return 12 * ROWS * COLS + 4 * COLS  # dout, out in; dz, db out
    if case.name.startswith("xent"):
        n, c = shape
        return 8 * n * c + 8 * n + 4  # logits, targets in; dlogits, the loss out
    if case.family == "softmax_xent":
        n, c = shape
        return (8 if "_fwd" in case.name else 12) * n * c
    if case.family == "losses":
        return 12 * N + 4  # scores, targets in; gradient, the loss out
    total = sum(p.size for p in case.args(0)[0])
    if case.name.startswith("adam"):
        return 28 * total  # p, g, m, v read; p, m, v written
    if case.name.startswith("sgd"):
        return 20 * total  # p, g, buf read; p, buf written
    return 12 * case.args(0)[0].size  # matmul: A, B in, C out


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name} {gpu_cases.shape_of(c)}" for c in CASES])
def test_bytes_come_from_the_arrays_read_and_written(case):
    result = case.reference(np, *case.args(0))
    assert gpu_cases.traffic(case, result) == _expected_bytes(case)


def test_optimizer_rows_count_the_parameters_they_update():
    adam, sgd = gpu_cases.cases(np, "optim", size="test")
    params = adam.args(0)[0]
    assert len(params) == 4 and sum(p.size for p in params) == N // 4
    # 28 bytes per updated element: 7 N bytes for N/4 elements, not 28 N.
    assert gpu_cases.traffic(adam, adam.reference(np, *adam.args(0))) == 7 * N
    assert gpu_cases.traffic(sgd, sgd.reference(np, *sgd.args(0))) == 5 * N


def test_the_matmul_row_counts_its_flops_from_the_operands():
    (case,) = gpu_cases.cases(np, "matmul", size="test")
    a, b = case.args(0)
    assert case.flops == 2 * a.shape[0] * a.shape[1] * b.shape[1]


def test_every_kernel_row_has_a_composition_and_a_torch_twin():
    for case in CASES:
        assert callable(case.reference) and callable(case.kernel), case.name
        assert case.torch_label, case.name
        assert case.torch is not None or case.family == "optim", case.name


TWINS = [c for c in CASES if c.torch is not None]


@pytest.mark.parametrize("case", TWINS, ids=[f"{c.name} {gpu_cases.shape_of(c)}" for c in TWINS])
def test_torch_twin_computes_what_the_reference_does(case):
    torch = pytest.importorskip("torch")

    def as_torch(a):
        return torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a

    args = case.args(0)
    want = gpu_cases.arrays_in(case.reference(np, *args))
    got = case.torch(torch, *[as_torch(a) for a in args])
    got = [
        t.detach().numpy() for t in gpu_cases.arrays_in(got if isinstance(got, tuple) else (got,))
    ]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- on the emulator
# gpugrad.cuda_emulator runs kernels/*.cu on the CPU behind a CuPy stand-in: every row of
# gpu_bench then runs its real path (verify, count, time the kernel and its composition).

from emulated import built_kernels, emulated_cp  # noqa: E402, F401  (fixtures)


def test_every_gpu_bench_row_runs_on_the_emulated_device(cp):
    import gpu_bench

    ceil = {"copy_GBps": 1.0, "cublas_TFLOPs": 1.0}  # rates only, nothing to compare here
    for case in gpu_cases.cases(cp, size="test"):
        row = gpu_bench.kernel_row(cp, case, reps=1, ceil=ceil)
        assert "error" not in row, (case.name, row.get("error"))
        assert "composition_error" not in row, (case.name, row["composition_error"])
        host = [gpu_bench._host(a) for a in case.args(0)]
        want = gpu_cases.traffic(case, case.reference(np, *host))
        assert row["bytes"] == want, (case.name, row["bytes"], want)  # the kernel's own outputs
        assert row["ms"] > 0 and row["composition_ms"] > 0 and row["vs_composition"] > 0
