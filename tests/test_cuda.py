"""Every CUDA kernel against its reference (the xp forward/backward on the CPU, in float64).

GPU tests carry the gpu mark and skip with the reason when CuPy or a GPU is missing; the few
CPU tests at the end check gg.cuda and the interop attributes without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import fused, optim_rules

DTYPES = ["float32", "float64"]
# float32 kernels against a float64 reference: elementwise ops round once or twice (1e-6);
# row reductions over <= 5000 values and tiled GEMM sums over K <= 256 stay under 1e-5.
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-11, atol=1e-13)}


@pytest.fixture
def cp():
    reason = gg.cuda.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA device: {reason}")
    import cupy

    return cupy


@pytest.fixture
def cuda():
    from gpugrad.backends import cuda

    return cuda


def _close(actual, expected, dtype, what):
    a = actual.get() if hasattr(actual, "get") else np.asarray(actual)
    e = np.asarray(expected, np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    ok = np.isclose(a.astype(np.float64), e, equal_nan=True, **TOL[dtype])
    if not ok.all():
        bad = tuple(np.argwhere(~ok)[0])
        raise AssertionError(
            f"{what} {dtype} {a.shape}: {int((~ok).sum())} mismatches, first at {bad}: "
            f"{a[bad]!r} vs {e[bad]!r}"
        )


def _data(rng, shape, dtype, scale=3.0):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    if x.size > 3:
        x.reshape(-1)[:3] = (0.0, 80.0, -80.0)  # the kink and saturated values
    return x


SOFTMAX_CASES = [((64, 10), -1), ((6, 5000), 1), ((7, 9, 33), 0), ((5, 1), 1)]
MATMUL_CASES = [(1, 1, 1), (65, 33, 17), (128, 256, 64), (64, 64, 64), (3, 0, 5)]
SIZES = [(), (1,), (7,), (1023,), (64, 65)]  # 0-d, tails of every length, vector bodies


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape", SIZES)
def test_activation_kernels_match_the_reference(cp, cuda, name, shape, dtype):
    rng = np.random.default_rng(0)
    x = _data(rng, shape, dtype)
    dout = _data(rng, shape, dtype, 1.0)
    op = gg.OPS[name]
    attrs = {"negative_slope": 0.2} if name == "leaky_relu" else {}
    ref = op.fwd(np, x.astype(np.float64), **attrs)
    out = getattr(cuda.launchers, name)(cp, cp.asarray(x), **attrs)
    _close(out, ref, dtype, f"{name} forward")
    saved = x if name == "leaky_relu" else ref.astype(dtype)
    extra = (0.2,) if name == "leaky_relu" else ()
    (dref,) = op.bwd(np, dout.astype(np.float64), saved.astype(np.float64), *extra)
    (dx,) = getattr(cuda.launchers, f"{name}_backward")(
        cp, cp.asarray(dout), cp.asarray(saved), *extra
    )
    _close(dx, dref, dtype, f"{name} backward")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, attrs", [("gelu", "none"), ("gelu", "tanh"), ("silu", None)])
@pytest.mark.parametrize("shape", SIZES)
def test_gelu_and_silu_kernels_match_the_reference(cp, cuda, name, attrs, shape, dtype):
    """gelu_fwd/bwd, gelu_tanh_fwd/bwd, silu_fwd/bwd: derivatives from the input x."""
    rng = np.random.default_rng(0)
    x = _data(rng, shape, dtype)
    dout = _data(rng, shape, dtype, 1.0)
    op = gg.OPS[name]
    kw = {} if attrs is None else {"approximate": attrs}
    extra = () if attrs is None else (attrs,)
    ref = op.fwd(np, x.astype(np.float64), **kw)
    out = getattr(cuda.launchers, name)(cp, cp.asarray(x), **kw)
    _close(out, ref, dtype, f"{name} {attrs} forward")
    (dref,) = op.bwd(np, dout.astype(np.float64), x.astype(np.float64), *extra)
    (dx,) = getattr(cuda.launchers, f"{name}_backward")(cp, cp.asarray(dout), cp.asarray(x), *extra)
    _close(dx, dref, dtype, f"{name} {attrs} backward")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, k", [((1, 1), 1), ((37, 70), 1), ((5, 1024), 1), ((3, 1025), 1), ((4, 5000), 1),
                 ((2, 3, 8), 2), ((300, 33), 1)]
)  # fmt: skip
def test_layer_norm_kernels_match_the_reference(cp, cuda, shape, k, dtype):
    """Warp rows (<= 1024 wide) and block rows (wider); the weight and bias gradients come out
    bitwise the same on a second run (no atomics)."""
    rng = np.random.default_rng(7)
    x = _data(rng, shape, dtype)
    w = rng.uniform(0.5, 1.5, shape[-k:]).astype(dtype)
    b = rng.standard_normal(shape[-k:]).astype(dtype)
    dout = _data(rng, shape, dtype, 1.0)
    op = gg.OPS["layer_norm"]
    wide = [a.astype(np.float64) for a in (x, w, b)]
    ref, stats = op.fwd(np, *wide, normalized_ndim=k, eps=1e-5)
    from gpugrad.backends.cuda import layernorm

    out, got = layernorm.layer_norm(cp, *(cp.asarray(a) for a in (x, w, b)), normalized_ndim=k)
    _close(out, ref, dtype, "layer_norm forward")
    _close(got["mean"], stats["mean"], dtype, "layer_norm mean")
    _close(got["rstd"], stats["rstd"], dtype, "layer_norm rstd")
    needs = (True, True, True)
    grads_ref = op.bwd(np, dout.astype(np.float64), stats["mean"], stats["rstd"], *wide, k,
                       1e-5, needs)  # fmt: skip
    args = (cp.asarray(dout), got["mean"], got["rstd"], cp.asarray(x), cp.asarray(w),
            cp.asarray(b), k, 1e-5, needs)  # fmt: skip
    grads = layernorm.layer_norm_backward(cp, *args)
    for name, g, r in zip(("dx", "dw", "db"), grads, grads_ref, strict=True):
        _close(g, r, dtype, f"layer_norm {name}")
    again = layernorm.layer_norm_backward(cp, *args)
    for g, g2 in zip(grads[1:], again[1:], strict=True):
        assert bool((g == g2).all()), "layer_norm weight/bias gradients differ between runs"


@pytest.mark.gpu
def test_embedding_backward_on_the_gpu_raises_under_deterministic_mode(cp):
    w = gg.randn(5, 3, device="cuda", requires_grad=True)
    out = gg.functional.embedding(gg.tensor([0, 0, 2], device="cuda"), w)
    gg.config.deterministic = True
    try:
        with pytest.raises(RuntimeError, match="embedding's backward.*nondeterministic"):
            out.sum().backward()
    finally:
        gg.config.deterministic = False


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_kernels_take_unaligned_views(cp, cuda, dtype):
    x = cp.asarray(_data(np.random.default_rng(1), 1001, dtype))[1:]  # 4 or 8 bytes off
    _close(
        cuda.launchers.relu(cp, x),
        np.maximum(x.get().astype(np.float64), 0),
        dtype,
        "relu unaligned",
    )


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_kernels_match_the_reference(cp, cuda, shape, axis, log, dtype):
    rng = np.random.default_rng(2)
    x = _data(rng, shape, dtype)
    # dout without _data's planted +-80: those make the float32 sum in the backward lose
    # digits that have nothing to do with the kernel
    dout = rng.standard_normal(shape).astype(dtype)
    op = gg.OPS["log_softmax" if log else "softmax"]
    name = "log_softmax" if log else "softmax"
    ref = op.fwd(np, x.astype(np.float64), axis=axis)
    _close(
        getattr(cuda.launchers, name)(cp, cp.asarray(x), axis=axis), ref, dtype, f"{name} forward"
    )
    (dref,) = op.bwd(np, dout.astype(np.float64), ref, axis)
    (dx,) = getattr(cuda.launchers, f"{name}_backward")(
        cp, cp.asarray(dout), cp.asarray(ref.astype(dtype)), axis
    )
    _close(dx, dref, dtype, f"{name} backward")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(1, 2), (33, 10), (300, 1024), (9, 1025), (4, 50000), (0, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_cross_entropy_kernel_matches_the_reference(cp, cuda, n, c, reduction, dtype):
    rng = np.random.default_rng(3)
    logits = _data(rng, (n, c), dtype)
    targets = rng.integers(0, c, n)
    targets[::4] = -100  # every fourth row ignored (all of them when n == 1)
    with np.errstate(all="ignore"):  # the mean of no rows is NaN, silently (as in apply)
        ref, ex = fused.cross_entropy.fwd(
            np, logits.astype(np.float64), targets, reduction=reduction
        )
    out, got = cuda.launchers.cross_entropy(
        cp, cp.asarray(logits), cp.asarray(targets), reduction=reduction
    )
    _close(out, ref, dtype, f"cross_entropy loss ({reduction})")
    _close(got["dlogits"], ex["dlogits"], dtype, f"cross_entropy dlogits ({reduction})")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (1000,), (37, 300)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("loss", ["binary_cross_entropy_with_logits", "mse_loss"])
def test_pointwise_loss_kernels_match_the_reference(cp, cuda, loss, shape, reduction, dtype):
    rng = np.random.default_rng(4)
    a = _data(rng, shape, dtype)
    t = rng.random(shape).astype(dtype)
    with np.errstate(all="ignore"):  # the mean of nothing is NaN, silently (as in apply)
        ref, ex = getattr(fused, loss).fwd(np, a.astype(np.float64), t.astype(np.float64),
                                           reduction=reduction)  # fmt: skip
    out, got = getattr(cuda.launchers, loss)(cp, cp.asarray(a), cp.asarray(t), reduction=reduction)
    _close(out, ref, dtype, f"{loss} ({reduction})")
    for key, value in ex.items():
        if isinstance(value, float):
            assert got[key] == value
        else:
            _close(got[key], value, dtype, f"{loss} {key} ({reduction})")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", MATMUL_CASES)
@pytest.mark.parametrize("vectorized", [None, False])
def test_tiled_matmul_matches_a_float64_product(cp, cuda, m, k, n, vectorized, dtype):
    rng = np.random.default_rng(5)
    a, b = _data(rng, (m, k), dtype, 1.0), _data(rng, (k, n), dtype, 1.0)
    c = cuda.matmul_tiled(cp.asarray(a), cp.asarray(b), vectorized=vectorized)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    assert float(np.abs(c.get() - ref).max(initial=0)) / scale < (
        1e-5 if dtype == "float32" else 1e-12
    )


@pytest.mark.gpu
def test_custom_matmul_is_used_only_when_configured(cp, monkeypatch):
    from gpugrad.backends import cuda

    calls = []
    monkeypatch.setattr(cuda.launchers, "matmul_tiled", lambda a, b: calls.append(1) or a @ b)
    x = gg.tensor(np.ones((4, 4), np.float32), device="cuda")
    _ = x @ x
    assert not calls
    gg.config.matmul = "custom"
    _ = x @ x
    assert calls == [1]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "act", ["identity", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "gelu_tanh", "silu"]
)
@pytest.mark.parametrize("shape", [(1, 1), (37, 70), (513, 64), (2, 3, 8)])
def test_bias_act_kernels_match_the_reference(cp, cuda, act, shape, dtype):
    rng = np.random.default_rng(6)
    z, b = _data(rng, shape, dtype), _data(rng, shape[-1:], dtype)
    dout = _data(rng, shape, dtype, 1.0)
    op = gg.OPS["bias_act"]
    ref = op.fwd(np, z.astype(np.float64), b.astype(np.float64), activation=act,
                 negative_slope=0.1)  # fmt: skip
    out = cuda.launchers.bias_act(
        cp, cp.asarray(z), cp.asarray(b), activation=act, negative_slope=0.1
    )
    _close(out, ref, dtype, f"bias_act {act} forward")
    saved = ref.astype(dtype)
    # z and b: read by the GELU and SiLU backward (derivative at z + b), ignored by the others
    dz_ref, db_ref = op.bwd(np, dout.astype(np.float64), saved.astype(np.float64), act, 0.1,
                            (True, True), z.astype(np.float64), b.astype(np.float64))  # fmt: skip
    dz, db = cuda.launchers.bias_act_backward(
        cp, cp.asarray(dout), cp.asarray(saved), act, 0.1, (True, True), cp.asarray(z),
        cp.asarray(b)
    )  # fmt: skip
    _close(dz, dz_ref, dtype, f"bias_act {act} dz")
    _close(db, db_ref, dtype, f"bias_act {act} db")  # atomics: order varies, values within tol


def _optim_case(rng, dtype, sizes):
    params = [rng.standard_normal(s).astype(dtype) for s in sizes]
    grads = [rng.standard_normal(s).astype(dtype) for s in sizes]
    state = [[rng.random(s).astype(dtype) for s in sizes] for _ in range(3)]
    return params, grads, state


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_sgd_matches_the_reference(cp, cuda, dtype):
    rng = np.random.default_rng(7)
    sizes = [(3, 5), (70000,), (1,), (0,)]  # a tensor spanning two chunks, an empty one
    params, grads, (bufs, _, _) = _optim_case(rng, dtype, sizes)
    hp = np.array(
        [[1, 0.1, 0.9, 0.1, 0.01, 1, 0, 0], [1, 0.05, 0.9, 0, 0, 0, 1, 1],
         [0, 0.1, 0, 0, 0, 0, 0, 0], [1, 0.1, 0.5, 0, 0, 0, 0, 0]], np.float64
    )  # fmt: skip
    dp = [cp.asarray(p) for p in params]
    db = [cp.asarray(b) for b in bufs]
    cuda.sgd_step(dp, [cp.asarray(g) for g in grads], db, hp)
    optim_rules.sgd_rows(params, grads, bufs, hp)
    for k in range(len(sizes)):
        _close(dp[k], params[k], dtype, f"sgd param {k}")
        _close(db[k], bufs[k], dtype, f"sgd buf {k}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_adam_matches_the_reference(cp, cuda, dtype):
    rng = np.random.default_rng(8)
    sizes = [(4, 4), (70000,), (3,)]
    params, grads, (m, v, vmax) = _optim_case(rng, dtype, sizes)
    hp = np.array(
        [[1, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0, 0, 0, 1], [1, 1e-2, 0.8, 0.99, 1e-6, 0.1, 1, 1, 1, 7],
         [1, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1, 0, 3]], np.float64
    )  # fmt: skip
    d = {k: [cp.asarray(a) for a in arrs] for k, arrs in
         dict(p=params, g=grads, m=m, v=v, x=vmax).items()}  # fmt: skip
    cuda.adam_step(d["p"], d["g"], d["m"], d["v"], [None, d["x"][1], None], hp)
    optim_rules.adam_rows(params, grads, m, v, [None, vmax[1], None], hp)
    for k in range(len(sizes)):
        for name, ref in (("p", params), ("m", m), ("v", v)):
            _close(d[name][k], ref[k], dtype, f"adam {name} {k}")
    _close(d["x"][1], vmax[1], dtype, "adam max_exp_avg_sq")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_rmsprop_matches_the_reference(cp, cuda, dtype):
    rng = np.random.default_rng(9)
    sizes = [(4, 4), (70000,), (3,), (0,)]
    params, grads, (sq, ga, bufs) = _optim_case(rng, dtype, sizes)
    ga[0] = ga[0] * 0.01  # centered rows need s - a^2 > 0
    hp = np.array(
        [[1, 1e-2, 0.99, 1e-8, 0.0, 0.9, 1, 0], [1, 1e-3, 0.3, 1e-6, 0.1, 0.0, 0, 1],
         [0, 1e-2, 0.99, 1e-8, 0.0, 0.0, 0, 0], [1, 1e-2, 0.9, 1e-8, 0.0, 0.5, 0, 0]], np.float64
    )  # fmt: skip
    d = {k: [cp.asarray(a) for a in arrs] for k, arrs in
         dict(p=params, g=grads, s=sq, a=ga, b=bufs).items()}  # fmt: skip
    none = [None] * len(sizes)
    centered = [d["a"][0], None, None, None]
    momentum = [d["b"][0], None, None, d["b"][3]]
    cuda.rmsprop_step(d["p"], d["g"], d["s"], centered, momentum, hp)
    optim_rules.rmsprop_rows(params, grads, sq, [ga[0], *none[1:]],
                             [bufs[0], None, None, bufs[3]], hp)  # fmt: skip
    for k in range(len(sizes)):
        for name, ref in (("p", params), ("s", sq)):
            _close(d[name][k], ref[k], dtype, f"rmsprop {name} {k}")
    _close(d["a"][0], ga[0], dtype, "rmsprop grad_avg")
    _close(d["b"][0], bufs[0], dtype, "rmsprop momentum_buffer")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_adagrad_matches_the_reference(cp, cuda, dtype):
    rng = np.random.default_rng(10)
    sizes = [(4, 4), (70000,), (3,)]
    params, grads, (sums, _, _) = _optim_case(rng, dtype, sizes)
    hp = np.array(
        [[1, 0.1, 0.0, 0.0, 0.0, 1e-10, 0, 1], [1, 0.1, 0.01, 0.1, 0.5, 1e-10, 1, 1],
         [1, 0.05, 0.1, 0.0, 0.0, 1e-6, 0, 7]], np.float64
    )  # fmt: skip
    dp, ds = [cp.asarray(a) for a in params], [cp.asarray(a) for a in sums]
    cuda.adagrad_step(dp, [cp.asarray(g) for g in grads], ds, hp)
    optim_rules.adagrad_rows(params, grads, sums, hp)
    for k in range(len(sizes)):
        _close(dp[k], params[k], dtype, f"adagrad param {k}")
        _close(ds[k], sums[k], dtype, f"adagrad sum {k}")


DISPATCHED = ("relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax", "matmul",
              "cross_entropy", "binary_cross_entropy_with_logits", "mse_loss",
              "bias_act")  # fmt: skip


@pytest.mark.gpu
def test_ops_dispatch_to_the_kernels_on_cuda(cp):
    for name in DISPATCHED:
        forward = gg.OPS[name].implementations()["cuda"]["forward"]
        assert forward == [f"gpugrad.backends.cuda.launchers.{name}", "reference"], name
    x = gg.tensor(np.array([-1.0, 2.0], np.float32), device="cuda", requires_grad=True)
    y = x.relu().sum()
    y.backward()
    assert x.grad.tolist() == [0.0, 1.0]


@pytest.mark.gpu
def test_kernel_errors_name_the_kernel_and_file(cp, tmp_path, monkeypatch):
    from gpugrad.backends import cuda

    (tmp_path / "common.cuh").write_text("")
    (tmp_path / "activations.cu").write_text("this is not CUDA\n")
    monkeypatch.setattr(cuda.runtime, "KERNEL_DIR", tmp_path)
    monkeypatch.setattr(cuda.runtime, "_modules", {})
    monkeypatch.setattr(cuda.runtime, "_functions", {})
    with pytest.raises(cuda.KernelError, match="activations.cu"):
        cuda.launchers.relu(cp, cp.ones(3, cp.float32))


@pytest.mark.gpu
def test_interop_shares_gpu_memory(cp):
    t = gg.tensor(np.arange(4, dtype=np.float32), device="cuda")
    assert cp.asarray(t).data.ptr == t.data.data.ptr  # __cuda_array_interface__
    back = gg.from_dlpack(cp.from_dlpack(t))
    assert back.device == "cuda:0" and back.data.data.ptr == t.data.data.ptr
    gg.cuda.synchronize()
    gg.cuda.synchronize("cuda:0")


# ----------------------------------------------------------------------------- CPU-only


def test_cuda_namespace_answers_without_a_gpu():
    assert isinstance(gg.cuda.is_available(), bool)
    assert gg.cuda.device_count() >= 0
    if not gg.cuda.is_available():
        assert gg.cuda.device_count() == 0
        assert gg.cuda.unavailable_reason()
        with pytest.raises(RuntimeError, match="CUDA is unavailable"):
            gg.cuda.synchronize()


def test_cpu_tensors_have_no_cuda_array_interface_but_speak_dlpack():
    t = gg.tensor([1.0, 2.0])
    assert not hasattr(t, "__cuda_array_interface__")
    assert np.from_dlpack(t).tolist() == [1.0, 2.0]
    shared = gg.from_dlpack(t.data)
    shared.data[0] = 5.0
    assert t.tolist() == [5.0, 2.0]


def test_kernel_table_lists_only_files_that_exist():
    from gpugrad.backends import cuda

    for file in cuda.KERNELS:
        assert (cuda.KERNEL_DIR / file).is_file(), file
    assert '#include "common.cuh"' not in cuda.source("activations.cu")


def test_gpu_check_dry_run_parses_arguments_and_writes_results(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"
    proc = subprocess.run(
        ["bash", str(script), "--dry-run", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable},  # the dry run builds cases with gpugrad
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 4 and all("_dry-run" in n for n in names), names
    summary = next(tmp_path.glob("*_dry-run.md")).read_text()
    assert "gpu tests (pytest -m gpu -x -q): skipped (dry run)" in summary
    sys.path.insert(0, str(script.parent))
    from gpu_cases import FAMILIES

    for family in FAMILIES:  # every family's rows, the layer and optimizer ones among them
        assert f"| {family} |" in summary, family
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown argument --bogus" in bad.stderr
