"""``gpugrad bench --kernels``: every Numba kernel of the CPU backend against its NumPy reference.

Each kernel is first checked against the op's reference, then it and the reference are timed,
interleaved (best of ``reps`` calls each), and the kernel is reported in GB/s against a copy of
as many bytes measured in the same run (the same working set, so a cache-resident kernel is
compared with a cache-resident copy). Bytes are the fewest a kernel must move: each input read
once and each output written once. A copy also reads its destination before writing it (write
allocation), which an in-place update (the optimizer steps) does not, so those can pass 100%.

Each row's NumPy side is the op's reference (``op.fwd`` / ``op.bwd``): what runs when the Numba
path declines, so the ratio is what the kernel saves. A row whose Numba path declines its inputs
is an error, not a row. Before each row the report waits (at most ``PATIENCE_S`` per run) for
a moment in which other processes keep at most ``QUIET`` of the CPUs busy, times a disturbed
row again while that patience lasts, and records the load during every row it keeps.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .machine import busy_seconds, cpu_name
from .steps import PATIENCE_S, QUIET, Patience

CPUS = os.cpu_count() or 1


class KernelCase(NamedTuple):
    """One row: the Numba path, the op's NumPy reference (None where there is none to time),
    the bytes a call must move, and the tolerance the two must agree within."""

    name: str
    nbytes: int
    fast: Callable
    ref: Callable | None
    tolerance: tuple = (1e-4, 1e-5)  # rtol, atol


def copy_ceiling(nbytes: int = 256 << 20, reps: int = 5) -> float:
    """GB/s of copying ``nbytes / 2`` bytes (read + write counted, so ``nbytes`` move): what a
    memory-bound kernel with the same working set can reach (cache-resident when it is small)."""
    src = np.ones(max(1, nbytes // 8), np.float32)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def kernel_cases(scale: int = 1) -> list[KernelCase]:
    """A KernelCase for every Numba kernel of the CPU backend.

    Bytes are the fewest a kernel must move: each input read once and each output written once.
    """
    from ..backends import cpu, cpu_optim
    from ..fused import bias_act, binary_cross_entropy_with_logits, cross_entropy, mse_loss

    rng = np.random.default_rng(0)
    cases = []
    # Class counts on both sides of where the scalar-exp kernel used to lose to NumPy.
    for n, c, dtype in ((4096, 10, np.float32), (4096, 100, np.float32), (1024, 1000, np.float32),
                        (4096, 100, np.float64)):  # fmt: skip
        logits = rng.standard_normal((n * scale, c)).astype(dtype)
        targets = rng.integers(0, c, n * scale)
        cases.append(
            (
                f"cross_entropy fwd+grad {n * scale}x{c} {np.dtype(dtype).name}",
                2 * logits.nbytes + targets.nbytes,
                lambda lg=logits, t=targets: cpu.cross_entropy(np, lg, t),
                lambda lg=logits, t=targets: cross_entropy.fwd(np, lg, t),
            )
        )
    m = (1 << 20) * scale
    s = rng.standard_normal(m, dtype=np.float32)
    t = rng.random(m, dtype=np.float32)
    for name, fast, ref in (
        (
            "binary_cross_entropy_with_logits",
            cpu.binary_cross_entropy_with_logits,
            binary_cross_entropy_with_logits,
        ),
        ("mse_loss", cpu.mse_loss, mse_loss),
    ):
        cases.append(
            (f"{name} {m}", 3 * s.nbytes, lambda f=fast: f(np, s, t), lambda r=ref: r.fwd(np, s, t))
        )
    rows, cols = 1024 * scale, 1024
    z = rng.standard_normal((rows, cols), dtype=np.float32)
    b = rng.standard_normal(cols, dtype=np.float32)
    dout = rng.standard_normal((rows, cols), dtype=np.float32)
    for act in ("relu", "leaky_relu", "identity", "tanh", "sigmoid"):
        cases.append(
            (
                f"bias_act fwd {act} {rows}x{cols}",
                2 * z.nbytes,
                lambda a=act: cpu.bias_act(np, z, b, activation=a),
                lambda a=act: bias_act.fwd(np, z, b, activation=a),
            )
        )
    for act in ("relu", "tanh", "sigmoid"):
        out = bias_act.fwd(np, z, b, activation=act)
        cases.append(
            (
                f"bias_act bwd {act} {rows}x{cols}",
                3 * z.nbytes,
                lambda a=act, o=out: cpu.bias_act_backward(np, dout, o, a, 0.01, (True, True)),
                lambda a=act, o=out: bias_act.bwd(np, dout, o, a, 0.01, (True, True)),
            )
        )
    from numba.typed import List

    k = (1 << 20) * scale
    p0 = rng.standard_normal(k, dtype=np.float32)
    g = rng.standard_normal(k, dtype=np.float32)
    offsets = np.array([0, k], np.int64)
    for momentum in (0.0, 0.9):
        hp = np.array([[1.0, 0.01, momentum, 0.0, 0.0, 0.0, 0.0, 0.0]])
        p = p0.copy()
        buf = np.zeros(k, np.float32)
        params = List([p])
        moved = (12 if momentum == 0 else 20) * k
        cases.append(
            (
                f"sgd_step momentum={momentum} {k}",
                moved,
                lambda pa=params, bu=buf, h=hp: cpu_optim.sgd_step(pa, g, bu, offsets, h),
                None,
            )
        )
    p = p0.copy()
    m1, v1 = np.zeros(k, np.float32), np.zeros(k, np.float32)
    hp = np.array([[1.0, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0, 0.0, 0.0, 1.0]])
    params = List([p])
    cases.append(
        (
            f"adam_step {k}",
            28 * k,
            lambda: cpu_optim.adam_step(params, g, m1, v1, m1[:0], offsets, hp),
            None,
        )
    )
    return [KernelCase(*c) for c in cases] + layer_cases(scale)


def _arrays(value) -> list:
    """Every NumPy array in a value (nested tuples, lists and dicts)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, tuple | list):
        return [a for v in value for a in _arrays(v)]
    return [value] if isinstance(value, np.ndarray | np.generic) else []


def _moved(read, written) -> int:
    """Bytes of the arrays a call reads and of those it writes, each counted once."""
    return sum(a.nbytes for a in _arrays(read)) + sum(a.nbytes for a in _arrays(written))


def layer_cases(scale: int = 1) -> list[KernelCase]:
    """The layer kernels: GELU and SiLU (``cpu_act``), bias + GELU / SiLU (``cpu``), LayerNorm
    (``cpu_norm``) and cross-entropy with class weights and label smoothing.

    Each in a dtype its Numba path takes: exact GELU in float32, SiLU in float64 only (in
    float32 its loop lost to NumPy's SIMD exp, so the fast path declines and the reference
    runs; the tanh GELU always runs the reference). Bytes come from the arrays: those the
    kernel reads (bias_act's backward of GELU and SiLU reads z and b, not the output; LayerNorm's
    backward does not read the bias) and those the op's reference returns.
    """
    from ..backends import cpu, cpu_act, cpu_norm
    from ..fused import bias_act, cross_entropy, layer_norm
    from ..ops import gelu, silu

    rng = np.random.default_rng(1)
    cases = []

    def add(name, read, fast, ref, tolerance=(1e-4, 1e-5)):
        cases.append(KernelCase(name, _moved(read, ref()), fast, ref, tolerance))

    rows, cols = 256 * scale, 1024  # the NumPy reference of exact GELU calls erf per element
    for act, op, fast_fwd, fast_bwd, dt in (
        ("gelu", gelu, cpu_act.gelu, cpu_act.gelu_backward, np.float32),
        ("silu", silu, cpu_act.silu, cpu_act.silu_backward, np.float64),
    ):
        x, d = (rng.standard_normal(rows * cols).astype(dt) for _ in range(2))
        extra = ("none",) if act == "gelu" else ()  # gelu saves approximate= with x
        name = f"{x.size} {np.dtype(dt).name}"
        add(f"{act} fwd {name}", (x,), lambda f=fast_fwd, x=x: f(np, x),
            lambda op=op, x=x: op.fwd(np, x))  # fmt: skip
        add(f"{act} bwd {name}", (d, x), lambda f=fast_bwd, d=d, x=x, e=extra: f(np, d, x, *e),
            lambda op=op, d=d, x=x, e=extra: op.bwd(np, d, x, *e))  # fmt: skip
    for act, dt in (("gelu", np.float32), ("silu", np.float64)):
        z, d = (rng.standard_normal((rows, cols)).astype(dt) for _ in range(2))
        b = rng.standard_normal(cols).astype(dt)
        name = f"{act} {rows}x{cols} {np.dtype(dt).name}"
        add(f"bias_act fwd {name}", (z, b),
            lambda a=act, z=z, b=b: cpu.bias_act(np, z, b, activation=a),
            lambda a=act, z=z, b=b: bias_act.fwd(np, z, b, activation=a))  # fmt: skip
        # backward's saved values: the output, the activation, slope, needs, and z and b
        saved = (bias_act.fwd(np, z, b, activation=act), act, 0.01, (True, True), z, b)
        add(f"bias_act bwd {name}", (d, z, b),
            lambda d=d, s=saved: cpu.bias_act_backward(np, d, *s),
            lambda d=d, s=saved: bias_act.bwd(np, d, *s))  # fmt: skip
    m = 1024 * scale
    x, d = (rng.standard_normal((m, cols), dtype=np.float32) for _ in range(2))
    w, b = (rng.standard_normal(cols, dtype=np.float32) for _ in range(2))
    stats = layer_norm.fwd(np, x, w, b)[1]
    saved = (stats["mean"], stats["rstd"], x, w, b, 1, 1e-5, (True, True, True))
    add(f"layer_norm fwd {m}x{cols} float32", (x, w, b),
        lambda: cpu_norm.layer_norm(np, x, w, b), lambda: layer_norm.fwd(np, x, w, b))  # fmt: skip
    # dw and db are column sums over m rows (|values| ~100): NumPy's float32 sums are ~1e-4 off
    # the float64 result, the kernel's (float64 accumulators) ~1e-5, hence atol 1e-3
    add(f"layer_norm bwd {m}x{cols} float32", (d, *saved[:4]),
        lambda: cpu_norm.layer_norm_backward(np, d, *saved),
        lambda: layer_norm.bwd(np, d, *saved), tolerance=(1e-4, 1e-3))  # fmt: skip
    n, c = 4096 * scale, 100
    logits = rng.standard_normal((n, c), dtype=np.float32)
    targets = rng.integers(0, c, n)
    ce = {"weight": rng.uniform(0.5, 2.0, c).astype(np.float32), "label_smoothing": 0.1}
    add(f"cross_entropy weight+label_smoothing {n}x{c} float32", (logits, targets, ce["weight"]),
        lambda: cpu.cross_entropy(np, logits, targets, **ce),
        lambda: cross_entropy.fwd(np, logits, targets, **ce))  # fmt: skip
    return cases


def check(case: KernelCase) -> None:
    """The Numba path must take the row's inputs (not decline them: the reference would run)
    and agree with the reference; AssertionError naming the row otherwise."""
    got = case.fast()
    if got is NotImplemented:
        raise AssertionError(f"{case.name}: the Numba path declines these inputs")
    if case.ref is not None and not _same(got, case.ref(), *case.tolerance):
        raise AssertionError(f"{case.name}: the Numba kernel differs from its NumPy reference")


def _same(a, b, rtol=1e-4, atol=1e-5) -> bool:
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], rtol, atol) for k in a)
    if a is None or isinstance(a, float | int | str):
        return a == b or (isinstance(a, float) and math.isclose(a, b, rel_tol=rtol))
    return np.allclose(a, b, rtol=rtol, atol=atol)


def _snapshot() -> tuple:
    return busy_seconds(), time.process_time(), time.perf_counter()


def _others_load(since: tuple) -> float:
    """The share of the machine's CPUs that other processes kept busy since ``since`` (from
    /proc/stat, less this process's own CPU time; 0 where there is no /proc/stat)."""
    busy0, own0, t0 = since
    busy1, own1, t1 = _snapshot()
    if busy0 is None or busy1 is None:
        return 0.0
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / ((t1 - t0) * CPUS)


def _settle(patience: Patience) -> tuple:
    """Wait, while ``patience`` lasts, for a 0.1 s window in which others keep at most QUIET
    of the CPUs busy; return the snapshot at the window's start (a row's load counts from it,
    so even a row of a few milliseconds is measured over at least 0.1 s)."""
    while True:
        since = _snapshot()
        time.sleep(0.1)
        patience.left -= 0.1
        if patience.left <= 0 or _others_load(since) <= QUIET:
            return since


def _time_row(case: KernelCase, reps: int, patience: Patience) -> tuple[float, float, float]:
    """(best kernel s, best reference s or inf, others' load): interleaved calls, after a quiet
    moment; run again while others kept more than QUIET busy and patience lasts."""
    while True:
        since = _settle(patience)
        best = ref_best = math.inf
        for _ in range(reps):
            best = min(best, _timed(case.fast))
            if case.ref is not None:
                ref_best = min(ref_best, _timed(case.ref))
        load = _others_load(since)
        if load <= QUIET or patience.left <= 0:
            return best, ref_best, load
        patience.left -= time.perf_counter() - since[2]


def kernel_report(reps: int = 20, scale: int = 1, log=print, patience_s=PATIENCE_S) -> list[dict]:
    """Check every CPU kernel against its NumPy reference, then time both, interleaved (best
    of ``reps`` each, on a quiet machine where one comes within ``patience_s``), and the
    kernel's GB/s against a copy of the same number of bytes."""
    log(f"# CPU kernels | {cpu_name()} | best of {reps}, kernel and reference interleaved")
    log(
        "| kernel | ms | GB/s | % of a copy of as many bytes | NumPy reference ms | x reference "
        "| others' CPU load |"
    )
    log("|---|---|---|---|---|---|---|")
    patience = Patience(patience_s)
    rows = []
    for case in kernel_cases(scale):
        case.fast()  # compile or load from the cache
        check(case)
        best, ref_best, load = _time_row(case, reps, patience)
        ceiling = copy_ceiling(case.nbytes, reps=max(5, reps // 2))
        ref_ms = ref_best * 1e3 if case.ref is not None else None
        gbs = case.nbytes / best / 1e9
        rows.append(
            {
                "kernel": case.name,
                "ms": best * 1e3,
                "gb_s": gbs,
                "ceiling_gb_s": ceiling,
                "reference_ms": ref_ms,
                "other_load": load,
            }
        )
        ref_text = "- | -" if ref_ms is None else f"{ref_ms:.3f} | {best * 1e3 / ref_ms:.2f}"
        log(
            f"| {case.name} | {best * 1e3:.3f} | {gbs:.1f} | {gbs / ceiling:.0%} | {ref_text} "
            f"| {load:.0%} |"
        )
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
