"""GPU kernel benchmarks: verify each kernel, then time it against the card's own ceilings.

Ceilings are measured in the same run: a large device-to-device copy gives the bandwidth that
memory-bound kernels are reported against (GB/s and % of copy), cuBLAS SGEMM the rate for the
tiled matmul (TFLOP/s and % of cuBLAS). Every kernel is first checked against its reference
(the xp forward in float64 on the same GPU); a kernel that fails is reported, not timed. Timing:
CUDA events around each call after a warm-up, median of many repetitions, rotating between
several input sets so repeats do not just hit L2. PyTorch on the same card is a row where it is
installed.

    python bench/gpu_bench.py                       # everything, results to bench/results/
    python bench/gpu_bench.py --family softmax_xent --reps 50
    python bench/gpu_bench.py --dry-run --out /tmp/r   # no GPU: arguments and result files only
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILIES = (
    "activations",
    "bias_act",
    "layernorm",
    "softmax_xent",
    "losses",
    "matmul",
    "optim",
    "training",
    "steps",
)
ROTATE = 3  # input sets per case


def _cases(family, quick):
    """(family, name, bytes moved, flops, setup) per case; setup(cp, rng) -> (run, verify)."""
    n = (1 << 22) if quick else (1 << 26)  # elements of the elementwise cases
    rows, cols = (2048, 1024) if quick else (8192, 4096)
    gemm = 1024 if quick else 4096
    out = []
    if family in ("activations", "all"):
        for name in ("relu", "leaky_relu", "sigmoid", "tanh"):
            out.append(("activations", f"{name}_fwd", 8 * n, 0, _act_case(name, n)))
        for name in ("relu", "leaky_relu", "sigmoid", "tanh"):
            out.append(("activations", f"{name}_bwd", 12 * n, 0, _act_bwd_case(name, n)))
        for kernel, name, attrs in (("gelu", "gelu", {"approximate": "none"}),
                                    ("gelu_tanh", "gelu", {"approximate": "tanh"}),
                                    ("silu", "silu", {})):  # fmt: skip
            out.append(("activations", f"{kernel}_fwd", 8 * n, 0, _x_act_case(name, attrs, n)))
            out.append(("activations", f"{kernel}_bwd", 12 * n, 0,
                        _x_act_case(name, attrs, n, backward=True)))  # fmt: skip
        out.append(("activations", "erf_fwd", 8 * n, 0, _act_case("erf", n)))
    if family in ("bias_act", "all"):
        out.append(("bias_act", "bias_act_fwd relu", 8 * rows * cols, 0, _bias_case(rows, cols)))
        out.append(
            ("bias_act", "bias_act_bwd relu", 12 * rows * cols, 0, _bias_bwd_case(rows, cols))
        )
        out.append(("bias_act", "bias_act_fwd gelu", 8 * rows * cols, 0,
                    _bias_case(rows, cols, "gelu")))  # fmt: skip
        out.append(("bias_act", "bias_act_bwd gelu", 16 * rows * cols, 0,
                    _bias_bwd_case(rows, cols, "gelu")))  # fmt: skip
    if family in ("layernorm", "all"):
        for nr, c in ((rows * 2, 1024), (rows // 4, 8192)):  # warp rows, block rows
            out.append(("layernorm", f"layernorm_fwd {nr}x{c}", 8 * nr * c, 0,
                        _layernorm_case(nr, c)))  # fmt: skip
            out.append(("layernorm", f"layernorm_bwd+param_bwd {nr}x{c}", 16 * nr * c, 0,
                        _layernorm_case(nr, c, backward=True)))  # fmt: skip
    if family in ("softmax_xent", "all"):
        for nr, c in ((rows * 4, 1000), (64 if quick else 512, 50000)):
            out.append(("softmax_xent", f"xent_fwd {nr}x{c}", 8 * nr * c, 0, _xent_case(nr, c)))
            for sm in ("softmax", "log_softmax"):
                out.append(("softmax_xent", f"{sm}_fwd {nr}x{c}", 8 * nr * c, 0,
                            _sm_case(nr, c, sm)))  # fmt: skip
                out.append(("softmax_xent", f"{sm}_bwd {nr}x{c}", 12 * nr * c, 0,
                            _sm_bwd_case(nr, c, sm)))  # fmt: skip
    if family in ("losses", "all"):
        for name in ("binary_cross_entropy_with_logits", "mse_loss"):
            out.append(("losses", name, 12 * n, 0, _loss_case(name, n)))
    if family in ("matmul", "all"):
        out.append(("matmul", f"cublas {gemm}^3", 0, 2 * gemm**3, _gemm_case(gemm, "cublas")))
        out.append(("matmul", f"tiled {gemm}^3", 0, 2 * gemm**3, _gemm_case(gemm, "tiled")))
    if family in ("optim", "all"):
        out.append(("optim", f"adam_step {n // 4} params", 28 * n, 0, _adam_case(n)))
        out.append(("optim", f"sgd_step {n // 4} params", 16 * n, 0, _sgd_case(n)))
    return out


def _rand(cp, rng, shape, dtype=np.float32, scale=3.0):
    return cp.asarray((rng.standard_normal(shape) * scale).astype(dtype))


def _check(got, ref, what, rtol=1e-4, atol=1e-5):
    import cupy as cp

    got, ref = cp.asarray(got, cp.float64), cp.asarray(ref, cp.float64)
    bad = ~cp.isclose(got, ref, rtol=rtol, atol=atol, equal_nan=True)
    if bool(bad.any()):
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} values off the reference")


def _act_case(name, n):
    def setup(cp, rng):
        from gpugrad import ops
        from gpugrad.backends import cuda

        xs = [_rand(cp, rng, n) for _ in range(ROTATE)]
        attrs = {"negative_slope": 0.1} if name == "leaky_relu" else {}
        fn = getattr(cuda.launchers, name)
        ref = getattr(ops, name).fwd(cp, xs[0].astype(cp.float64), **attrs)
        _check(fn(cp, xs[0], **attrs), ref, name)
        return lambda i: fn(cp, xs[i % ROTATE], **attrs)

    return setup


def _act_bwd_case(name, n):
    """An activation's backward kernel against the op table's reference backward."""

    def setup(cp, rng):
        from gpugrad import ops
        from gpugrad.backends import cuda

        op = getattr(ops, name)

        def saved(x):  # what the op saves: x and the slope for leaky_relu, else the output
            return (x, 0.1) if name == "leaky_relu" else (op.fwd(cp, x),)

        d = [_rand(cp, rng, n) for _ in range(ROTATE)]
        args = [saved(_rand(cp, rng, n)) for _ in range(ROTATE)]
        fn = getattr(cuda.launchers, f"{name}_backward")
        wide = [a.astype(cp.float64) if hasattr(a, "astype") else a for a in args[0]]
        ref = op.bwd(cp, d[0].astype(cp.float64), *wide)[0]
        _check(fn(cp, d[0], *args[0])[0], ref, f"{name}_bwd")
        return lambda i: fn(cp, d[i % ROTATE], *args[i % ROTATE])

    return setup


def _x_act_case(name, attrs, n, backward=False):
    """GELU and SiLU: their backward kernels take the input x, not the output."""

    def setup(cp, rng):
        from gpugrad import ops
        from gpugrad.backends import cuda

        op = getattr(ops, name)
        xs = [_rand(cp, rng, n) for _ in range(ROTATE)]
        extra = tuple(attrs.values())
        if not backward:
            fn = getattr(cuda.launchers, name)
            _check(fn(cp, xs[0], **attrs), op.fwd(cp, xs[0].astype(cp.float64), **attrs), name)
            return lambda i: fn(cp, xs[i % ROTATE], **attrs)
        fn = getattr(cuda.launchers, f"{name}_backward")
        d = [_rand(cp, rng, n) for _ in range(ROTATE)]
        ref = op.bwd(cp, d[0].astype(cp.float64), xs[0].astype(cp.float64), *extra)[0]
        _check(fn(cp, d[0], xs[0], *extra)[0], ref, f"{name}_bwd")
        return lambda i: fn(cp, d[i % ROTATE], xs[i % ROTATE], *extra)

    return setup


def _bias_bwd_case(rows, cols, act="relu"):
    def setup(cp, rng):
        from gpugrad import fused
        from gpugrad.backends import cuda

        d = [_rand(cp, rng, (rows, cols)) for _ in range(ROTATE)]
        z, b = _rand(cp, rng, (rows, cols)), _rand(cp, rng, cols)
        out = fused.bias_act.fwd(cp, z, b, activation=act)
        needs = (True, True)
        got = cuda.launchers.bias_act_backward(cp, d[0], out, act, 0.01, needs, z, b)
        wide = [a.astype(cp.float64) for a in (d[0], out, z, b)]
        ref = fused.bias_act.bwd(cp, wide[0], wide[1], act, 0.01, needs, *wide[2:])
        _check(got[0], ref[0], "bias_act_bwd dz")
        _check(got[1], ref[1], "bias_act_bwd db", rtol=1e-3, atol=1e-3)  # column sums
        return lambda i: cuda.launchers.bias_act_backward(
            cp, d[i % ROTATE], out, act, 0.01, needs, z, b
        )

    return setup


def _bias_case(rows, cols, act="relu"):
    def setup(cp, rng):
        from gpugrad import fused
        from gpugrad.backends import cuda

        z = [_rand(cp, rng, (rows, cols)) for _ in range(ROTATE)]
        b = _rand(cp, rng, cols)
        ref = fused.bias_act.fwd(cp, z[0].astype(cp.float64), b.astype(cp.float64), activation=act)
        _check(cuda.launchers.bias_act(cp, z[0], b, activation=act), ref, f"bias_act {act}")
        return lambda i: cuda.launchers.bias_act(cp, z[i % ROTATE], b, activation=act)

    return setup


def _layernorm_case(nr, c, backward=False):
    def setup(cp, rng):
        from gpugrad import fused
        from gpugrad.backends.cuda import layernorm

        xs = [_rand(cp, rng, (nr, c)) for _ in range(ROTATE)]
        w, b = _rand(cp, rng, c, scale=1.0), _rand(cp, rng, c, scale=1.0)
        wide = [a.astype(cp.float64) for a in (xs[0], w, b)]
        ref, stats = fused.layer_norm.fwd(cp, *wide)
        out, got = layernorm.layer_norm(cp, xs[0], w, b)
        _check(out, ref, "layernorm_fwd")
        if not backward:
            return lambda i: layernorm.layer_norm(cp, xs[i % ROTATE], w, b)
        d = _rand(cp, rng, (nr, c), scale=1.0)
        needs = (True, True, True)
        refs = fused.layer_norm.bwd(cp, d.astype(cp.float64), stats["mean"], stats["rstd"], *wide,
                                    1, 1e-5, needs)  # fmt: skip
        grads = layernorm.layer_norm_backward(cp, d, got["mean"], got["rstd"], xs[0], w, b, 1,
                                              1e-5, needs)  # fmt: skip
        for name, g, r in zip(("dx", "dw", "db"), grads, refs, strict=True):
            _check(g, r, f"layernorm_bwd {name}", rtol=1e-3, atol=1e-3)  # column sums over rows
        saved = [layernorm.layer_norm(cp, x, w, b)[1] for x in xs]
        return lambda i: layernorm.layer_norm_backward(
            cp, d, saved[i % ROTATE]["mean"], saved[i % ROTATE]["rstd"], xs[i % ROTATE], w, b,
            1, 1e-5, needs
        )  # fmt: skip

    return setup


def _xent_case(nr, c):
    def setup(cp, rng):
        from gpugrad import fused
        from gpugrad.backends import cuda

        x = [_rand(cp, rng, (nr, c)) for _ in range(ROTATE)]
        t = cp.asarray(rng.integers(0, c, nr))
        ref, ex = fused.cross_entropy.fwd(cp, x[0].astype(cp.float64), t)
        out, got = cuda.launchers.cross_entropy(cp, x[0], t)
        _check(out, ref, "xent loss")
        _check(got["dlogits"], ex["dlogits"], "xent dlogits")
        return lambda i: cuda.launchers.cross_entropy(cp, x[i % ROTATE], t)

    return setup


def _sm_case(nr, c, name="softmax"):
    def setup(cp, rng):
        from gpugrad import ops
        from gpugrad.backends import cuda

        fn, op = getattr(cuda.launchers, name), getattr(ops, name)
        x = [_rand(cp, rng, (nr, c)) for _ in range(ROTATE)]
        _check(fn(cp, x[0]), op.fwd(cp, x[0].astype(cp.float64)), name)
        return lambda i: fn(cp, x[i % ROTATE])

    return setup


def _sm_bwd_case(nr, c, name="softmax"):
    def setup(cp, rng):
        from gpugrad import ops
        from gpugrad.backends import cuda

        fn, op = getattr(cuda.launchers, f"{name}_backward"), getattr(ops, name)
        out = op.fwd(cp, _rand(cp, rng, (nr, c)))
        d = [_rand(cp, rng, (nr, c)) for _ in range(ROTATE)]
        ref = op.bwd(cp, d[0].astype(cp.float64), out.astype(cp.float64), -1)[0]
        _check(fn(cp, d[0], out, -1)[0], ref, f"{name}_bwd")
        return lambda i: fn(cp, d[i % ROTATE], out, -1)

    return setup


def _loss_case(name, n):
    def setup(cp, rng):
        from gpugrad import fused
        from gpugrad.backends import cuda

        s = [_rand(cp, rng, n) for _ in range(ROTATE)]
        t = cp.asarray(rng.random(n).astype(np.float32))
        ref, _ = getattr(fused, name).fwd(cp, s[0].astype(cp.float64), t.astype(cp.float64))
        _check(getattr(cuda.launchers, name)(cp, s[0], t)[0], ref, name)
        return lambda i: getattr(cuda.launchers, name)(cp, s[i % ROTATE], t)

    return setup


def _gemm_case(size, version):
    def setup(cp, rng):
        from gpugrad.backends import cuda

        a = [_rand(cp, rng, (size, size), scale=1.0) for _ in range(ROTATE)]
        b = _rand(cp, rng, (size, size), scale=1.0)
        fn = cp.matmul if version == "cublas" else cuda.matmul_tiled
        ref = a[0][:256].astype(cp.float64) @ b.astype(cp.float64)
        _check(fn(a[0], b)[:256], ref, f"matmul {version}", rtol=1e-3, atol=1e-3)
        return lambda i: fn(a[i % ROTATE], b)

    return setup


def _adam_case(n):
    def setup(cp, rng):
        from gpugrad import optim_rules
        from gpugrad.backends import cuda

        sizes = [n // 16] * 4  # a quarter of n elements in four tensors
        groups = [[_rand(cp, rng, s, scale=0.1) for s in sizes] for _ in range(4)]
        groups[3] = [cp.abs(v) for v in groups[3]]
        hp = np.tile([1, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, 0, 0, 1], (len(sizes), 1))
        ref = [[a.get() for a in g] for g in groups]
        optim_rules.adam_rows(*ref, [None] * len(sizes), hp)
        cuda.adam_step(*groups, [None] * len(sizes), hp)
        for k in range(len(sizes)):
            _check(groups[0][k], ref[0][k], "adam_step")
        return lambda i: cuda.adam_step(*groups, [None] * len(sizes), hp)

    return setup


def _sgd_case(n):
    def setup(cp, rng):
        from gpugrad import optim_rules
        from gpugrad.backends import cuda

        sizes = [n // 16] * 4
        groups = [[_rand(cp, rng, s, scale=0.1) for s in sizes] for _ in range(3)]
        hp = np.tile([1, 1e-2, 0.9, 0.0, 0.0, 0, 0, 0], (len(sizes), 1))  # momentum, not first
        ref = [[a.get() for a in g] for g in groups]
        optim_rules.sgd_rows(*ref, hp)
        cuda.sgd_step(*groups, hp)
        for k in range(len(sizes)):
            _check(groups[0][k], ref[0][k], "sgd_step")
        return lambda i: cuda.sgd_step(*groups, hp)

    return setup


def time_ms(cp, run, reps, warmup=3):
    """Median milliseconds of run(i) over reps calls, each bracketed by CUDA events."""
    for i in range(warmup):
        run(i)
    times = []
    for i in range(reps):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        run(i)
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def ceilings(cp, reps, quick):
    """Measured device-to-device copy GB/s and cuBLAS SGEMM TFLOP/s on this card."""
    n = (1 << 24) if quick else (1 << 28)  # bytes per buffer
    src = [cp.ones(n // 4, cp.float32) for _ in range(2)]
    dst = cp.empty_like(src[0])
    ms = time_ms(cp, lambda i: dst.__setitem__(Ellipsis, src[i % 2]), reps)
    size = 1024 if quick else 4096
    a, b = cp.ones((size, size), cp.float32), cp.ones((size, size), cp.float32)
    gemm_ms = time_ms(cp, lambda i: cp.matmul(a, b), reps)
    return {"copy_GBps": 2 * n / ms / 1e6, "cublas_TFLOPs": 2 * size**3 / gemm_ms / 1e9}


def device_info():
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {
        "card": name,
        "cupy": cp.__version__,
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "driver": cp.cuda.runtime.driverGetVersion(),
    }


def torch_rows(reps, quick):
    """PyTorch eager on the same card for a few peers of the kernels above, when installed."""
    try:
        import torch
    except ImportError:
        return [{"name": "torch", "error": "PyTorch is not installed"}]
    if not torch.cuda.is_available():
        return [{"name": "torch", "error": "torch.cuda is not available"}]
    n = (1 << 22) if quick else (1 << 26)
    x = torch.randn(n, device="cuda")
    logits = torch.randn(8192, 1000, device="cuda")
    t = torch.randint(0, 1000, (8192,), device="cuda")
    rows = []
    for name, fn, nbytes in (
        ("torch relu", lambda: torch.relu(x), 8 * n),
        ("torch cross_entropy fwd+bwd-free", lambda: torch.nn.functional.cross_entropy(logits, t),
         4 * logits.numel()),
    ):  # fmt: skip
        for _ in range(3):
            fn()
        times = []
        for _ in range(reps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        ms = float(np.median(times))
        rows.append({"name": name, "ms": ms, "GBps": nbytes / ms / 1e6})
    return rows


def op_overhead_row(cp, chain=1000):
    """Python cost per recorded op on the GPU: a 1,000-op chain on a 4-element tensor, forward
    and backward, wall time divided by the op count (the kernels themselves take ~nothing)."""
    import gpugrad as gg

    x = gg.tensor(np.ones(4, np.float32), device="cuda", requires_grad=True)

    def run():
        y = x
        for _ in range(chain):
            y = y * 1.0001
        y.sum().backward()
        x.grad = None

    run()
    cp.cuda.Device().synchronize()
    start = time.perf_counter()
    for _ in range(5):
        run()
    cp.cuda.Device().synchronize()
    us = (time.perf_counter() - start) / (5 * chain) * 1e6
    return {"name": f"python overhead per recorded op ({chain}-op chain, fwd+bwd)", "us": us}


def step_rows(reps, quick):
    """The configs of ``gpugrad bench`` on the GPU: one SGD training step of gpugrad eager,
    gpugrad replayed as a CUDA graph (gg.cuda.graph), PyTorch eager and
    torch.compile(mode="reduce-overhead"), all from the same weights and batch; each row says
    its ratio to PyTorch eager."""
    import cupy as cp

    rows = []
    for name in ("tiny", "deep") if quick else ("tiny", "mnist", "wide", "deep"):
        rows += _config_step_rows(cp, name, reps)
        cp.get_default_memory_pool().free_all_blocks()
    return rows


def _config_step_rows(cp, name, reps):
    import gpugrad as gg
    from gpugrad.benchmark import CONFIGS, GpugradPeer, TorchPeer, make_problem

    cfg = CONFIGS[name]
    problem = make_problem(cfg)
    rows, results = [], {}

    def timed(label, make_run):
        try:  # one failing peer must not hide the others
            results[label] = time_ms(cp, make_run(), reps)
        except ImportError:
            rows.append({"name": f"{name} {label}", "error": "PyTorch is not installed"})
        except Exception as e:
            rows.append({"name": f"{name} {label}", "error": f"{type(e).__name__}: {e}"})

    def eager():
        peer = GpugradPeer(cfg, *problem, device="cuda")
        return lambda i: peer.step()

    def graphed():
        peer = GpugradPeer(cfg, *problem, device="cuda")
        captured = gg.cuda.graph(peer.step_on, peer.x, peer.y)
        return lambda i: captured(peer.x, peer.y)

    def torch_run(compiled):
        import torch

        peer = TorchPeer(cfg, *problem, device="cuda")
        step = torch.compile(peer.step_on, mode="reduce-overhead") if compiled else peer.step_on
        return lambda i: step(peer.x, peer.y)

    timed("gpugrad eager", eager)
    timed("gpugrad graphed", graphed)
    timed("torch eager", lambda: torch_run(False))
    if name in ("tiny", "deep"):  # the configs with a target against torch.compile
        timed("torch.compile reduce-overhead", lambda: torch_run(True))
    base = results.get("torch eager")
    for label, ms in results.items():
        ratio = f" ({ms / base:.2f} x torch eager)" if base else ""
        rows.append({"family": "steps", "name": f"{name} {label}{ratio}", "ms": ms})
    return rows


def training_rows(reps, quick):
    """One MLP training step (forward, backward, Adam) in gpugrad and in PyTorch, same card."""
    import cupy as cp

    import gpugrad as gg
    import gpugrad.functional as F

    batch, sizes = (256, (784, 512, 512, 10)) if quick else (1024, (784, 2048, 2048, 10))
    rng = np.random.default_rng(0)
    x = gg.tensor(rng.standard_normal((batch, sizes[0])).astype(np.float32), device="cuda")
    y = gg.tensor(rng.integers(0, 10, batch), device="cuda")
    model = gg.nn.Sequential(
        gg.nn.Linear(sizes[0], sizes[1]), gg.nn.ReLU(), gg.nn.Linear(sizes[1], sizes[2]),
        gg.nn.ReLU(), gg.nn.Linear(sizes[2], sizes[3]),
    )  # fmt: skip
    model.to("cuda")
    opt = gg.optim.Adam(model.parameters(), lr=1e-3)

    def step(i):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    rows = [{"name": f"gpugrad MLP step {sizes} batch {batch}", "ms": time_ms(cp, step, reps)}]
    rows.append(op_overhead_row(cp))
    try:
        import torch

        if torch.cuda.is_available():
            layers = []
            for i in range(3):
                layers += [torch.nn.Linear(sizes[i], sizes[i + 1]), torch.nn.ReLU()]
            tm = torch.nn.Sequential(*layers[:-1]).cuda()
            topt = torch.optim.Adam(tm.parameters(), lr=1e-3)
            tx, ty = torch.as_tensor(x.numpy()).cuda(), torch.as_tensor(y.numpy()).cuda()

            def tstep(i):
                topt.zero_grad()
                torch.nn.functional.cross_entropy(tm(tx), ty).backward()
                topt.step()

            rows.append({"name": "torch eager MLP step", "ms": time_ms(cp, tstep, reps)})
    except ImportError:
        rows.append({"name": "torch eager MLP step", "error": "PyTorch is not installed"})
    return rows


def run(args):
    import cupy as cp

    info = device_info()
    ceil = ceilings(cp, args.reps, args.quick)
    rng = np.random.default_rng(0)
    rows = []
    for family, name, nbytes, flops, setup in _cases(args.family, args.quick):
        row = {"family": family, "name": name}
        try:
            fn = setup(cp, rng)
            ms = time_ms(cp, fn, args.reps)
            row["ms"] = ms
            if nbytes:
                row["GBps"] = nbytes / ms / 1e6
                row["pct_copy"] = 100 * row["GBps"] / ceil["copy_GBps"]
            if flops:
                row["TFLOPs"] = flops / ms / 1e9
                row["pct_cublas"] = 100 * row["TFLOPs"] / ceil["cublas_TFLOPs"]
        except Exception as e:  # recorded, so one broken kernel does not hide the others
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        cp.get_default_memory_pool().free_all_blocks()
    peers = torch_rows(args.reps, args.quick) if args.family == "all" else []
    if args.family in ("all", "training"):
        try:
            peers += training_rows(args.reps, args.quick)
        except Exception as e:
            peers.append({"name": "training step", "error": f"{type(e).__name__}: {e}"})
    if args.family == "steps":  # its own run in gpu_check.sh: torch.compile takes a while
        peers += step_rows(args.reps, args.quick)
    return {**info, **ceil, "rows": rows, "peers": peers}


def _per_op(row) -> str:
    return f"{row['us']:.1f} us/op (target <= 15)" if "us" in row else ""


def markdown(result) -> str:
    lines = [
        f"# GPU benchmarks: {result['card']} ({result['date']})",
        "",
        f"{result.get('status', '')}",
        "",
        f"copy ceiling {result.get('copy_GBps', float('nan')):.0f} GB/s, "
        f"cuBLAS SGEMM {result.get('cublas_TFLOPs', float('nan')):.1f} TFLOP/s",
        "",
        "| family | kernel | ms | GB/s | % copy | TFLOP/s | % cuBLAS | note |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(row, key, fmt):
        return format(row[key], fmt) if key in row else ""

    for r in result["rows"] + result.get("peers", []):
        lines.append(
            f"| {r.get('family', 'peer')} | {r['name']} | {f(r, 'ms', '.3f')} | "
            f"{f(r, 'GBps', '.0f')} | {f(r, 'pct_copy', '.0f')} | {f(r, 'TFLOPs', '.1f')} | "
            f"{f(r, 'pct_cublas', '.0f')} | {r.get('error', '') or _per_op(r)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("all", *FAMILIES), default="all")
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions per case")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--stem", help="file name stem (default: <date>_<card>_bench)")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: list cases, write files")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    date = datetime.date.today().isoformat()
    if args.dry_run:
        cases = _cases(args.family, args.quick)
        result = {
            "card": "dry-run",
            "status": "dry run: no GPU used, nothing measured",
            "rows": [{"family": c[0], "name": c[1]} for c in cases],
            "peers": [],
        }
    else:
        started = time.perf_counter()
        result = run(args)
        result["status"] = f"measured in {time.perf_counter() - started:.0f} s"
    result.update(date=date, python=platform.python_version(), numpy=np.__version__)
    result["args"] = {k: str(v) for k, v in vars(args).items()}
    card = re.sub(r"[^A-Za-z0-9]+", "-", result["card"]).strip("-")
    stem = args.stem or f"{date}_{card}_bench"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {args.out / stem}.json and .md")
    failed = [r for r in result["rows"] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
