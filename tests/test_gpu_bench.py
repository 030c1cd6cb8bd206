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


def _layernorm_bytes(case) -> int:
    """LayerNorm over (m, d), float32: x, dout, dx are m d values; mean, rstd m; w, b, dw, db d."""
    m, d = case.args(0)[0].shape
    if "_fwd_" in case.name:
        return 4 * (2 * m * d + 2 * d + 2 * m)  # x, w, b in; out, mean, rstd out
    if case.name.endswith("(dx)"):
        return 4 * (3 * m * d + 2 * m + d)  # dout, mean, rstd, x, w in (not b); dx out
    if case.name.endswith("(dw, db)"):
        return 4 * (2 * m * d + 2 * m + 2 * d)  # dout, mean, rstd, x in (nor w); dw, db out
    return 4 * (3 * m * d + 2 * m + 3 * d)  # dout, mean, rstd, x, w in; dx, dw, db out


def _expected_bytes(case) -> int:
    """The traffic of each case worked out by hand: float32 is 4 bytes, int64 targets 8."""
    shape = case.args(0)[0].shape if not isinstance(case.args(0)[0], list) else None
    if case.family == "activations":
        return (8 if case.name.endswith("_fwd") else 12) * N  # in + out; dout + saved + dx
    if case.name.startswith("bias_act_fwd"):
        return 8 * ROWS * COLS + 4 * COLS  # z, b in; out
    if case.name == "bias_act_bwd gelu":
        return 12 * ROWS * COLS + 8 * COLS  # dout, z, b in (not the output); dz, db out
    if case.name.startswith("bias_act_bwd"):
        return 12 * ROWS * COLS + 4 * COLS  # dout, out in; dz, db out
    if case.family == "layernorm":
        return _layernorm_bytes(case)
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
    if case.name.startswith("rmsprop_step centered"):
        return 36 * total  # p, g, square_avg, grad_avg, buf read; all but g written
    if case.name.startswith(("sgd", "rmsprop", "adagrad")):
        return 20 * total  # p, g and one buffer read; p and the buffer written
    if case.name.startswith("grad_norm"):
        return 4 * total + 8  # the gradients read; the float64 norm written
    if case.name.startswith("grad_scale"):
        return 8 * total + 8  # the gradients read and written; the coefficient read
    if case.name.startswith("grad_clamp"):
        return 8 * total  # the gradients read and written
    return 12 * case.args(0)[0].size  # matmul: A, B in, C out


@pytest.mark.parametrize("case", CASES, ids=[f"{c.name} {gpu_cases.shape_of(c)}" for c in CASES])
def test_bytes_come_from_the_arrays_read_and_written(case):
    result = case.reference(np, *case.args(0))
    assert gpu_cases.traffic(case, result) == _expected_bytes(case)


def test_optimizer_rows_count_the_parameters_they_update():
    adam, sgd, *_ = gpu_cases.cases(np, "optim", size="test")
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
        # an in-place case's twin runs on copies; every other one on the case's own arrays
        assert (case.torch is None) == bool(case.updated) == (case.torch_step is not None)


TWINS = [c for c in CASES if c.torch is not None]


@pytest.mark.parametrize("case", TWINS, ids=[f"{c.name} {gpu_cases.shape_of(c)}" for c in TWINS])
def test_torch_twin_computes_what_the_reference_does(case):
    torch = pytest.importorskip("torch")

    def as_torch(a):
        if isinstance(a, list):
            return [as_torch(v) for v in a]
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


STEPS = [c for c in CASES if c.torch_step is not None]


@pytest.mark.parametrize("case", STEPS, ids=[c.name for c in STEPS])
def test_torch_step_twin_updates_what_the_reference_does(case):
    """PyTorch's optimizer (or nn.utils function), built on copies with the case's state and
    hyperparameters, makes the reference's update: the same work as the kernel."""
    torch = pytest.importorskip("torch")

    def copy(a, to_torch):
        if isinstance(a, list):
            return [copy(v, to_torch) for v in a]
        if isinstance(a, np.ndarray):
            return torch.from_numpy(a.copy()) if to_torch else a.copy()
        return a  # None, a scalar

    host = set(case.host)  # the hp rows stay NumPy arrays, as on the GPU
    want = [copy(a, False) for a in case.args(0)]
    case.reference(np, *want)
    got = [a if k in host else copy(a, True) for k, a in enumerate(case.args(0))]
    case.torch_step(torch, *got)()
    for k in case.updated:
        for g, w in zip(got[k], want[k], strict=True):
            np.testing.assert_allclose(g.detach().numpy(), w, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- on the emulator
# gpugrad.cuda_emulator runs kernels/*.cu on the CPU behind a CuPy stand-in: every row of
# gpu_bench then runs its real path (verify, count, time the kernel and its composition).

from emulated import built_kernels, emulated_cp  # noqa: E402, F401  (fixtures)

# The tiled matmul's bounds-checked version: gpu_bench times the version matmul picks for
# its operands (float4 loads at every size it runs); tests/test_emulator_kernels.py checks both.
NOT_TIMED = {("matmul.cu", "matmul_tiled_scalar")}


def test_every_gpu_bench_row_runs_on_the_emulated_device(cp, monkeypatch):
    import gpu_bench

    from gpugrad.backends.cuda import runtime

    launched = []  # (file, kernel) of every launch, the kernel lookups of runtime.launch
    function = runtime.function

    def recorded(file, base, dtype):
        launched.append((file, base))
        return function(file, base, dtype)

    monkeypatch.setattr(runtime, "function", recorded)
    ceil = {"copy_GBps": 1.0, "cublas_TFLOPs": 1.0}  # rates only, nothing to compare here
    covered = set()
    for case in gpu_cases.cases(cp, size="test"):
        launched.clear()
        row = gpu_bench.kernel_row(cp, case, reps=1, ceil=ceil)
        assert "error" not in row, (case.name, row.get("error"))
        assert "composition_error" not in row, (case.name, row["composition_error"])
        assert launched, f"{case.name}: no kernel ran"
        covered.update(launched)
        host = [gpu_bench._host(a) for a in case.args(0)]
        want = gpu_cases.traffic(case, case.reference(np, *host))
        assert row["bytes"] == want, (case.name, row["bytes"], want)  # the kernel's own outputs
        assert row["ms"] > 0 and row["composition_ms"] > 0 and row["vs_composition"] > 0
    every = {(file, k) for file, kernels in runtime.KERNELS.items() for k in kernels}
    missing = sorted(every - NOT_TIMED - covered)
    assert not missing, f"kernels no gpu_bench row runs at test size: {missing}"
