"""``gpugrad bench --kernels``: every Numba kernel of the CPU backend against its NumPy reference.

Each kernel is first checked against the op's reference, then it and the reference are timed,
interleaved (best of ``reps`` calls each), and the kernel is reported in GB/s against a copy of
as many bytes measured in the same run (the same working set, so a cache-resident kernel is
compared with a cache-resident copy). Bytes are the fewest a kernel must move: each input read
once and each output written once. A copy also reads its destination before writing it (write
allocation), which an in-place update (the optimizer steps) does not, so those can pass 100%.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .machine import cpu_name


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


def kernel_cases(scale: int = 1):
    """(name, bytes moved, run) for every Numba kernel of the CPU backend, checked first.

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
    return cases


def _same(a, b) -> bool:
    if isinstance(a, tuple | list):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    if a is None or isinstance(a, float | int | str):
        return a == b or (isinstance(a, float) and math.isclose(a, b, rel_tol=1e-4))
    return np.allclose(a, b, rtol=1e-4, atol=1e-5)


def kernel_report(reps: int = 20, scale: int = 1, log=print) -> list[dict]:
    """Check every CPU kernel against its NumPy reference, then time both, interleaved (best
    of ``reps`` each), and the kernel's GB/s against a copy of the same number of bytes."""
    log(f"# CPU kernels | {cpu_name()} | best of {reps}, kernel and reference interleaved")
    log("| kernel | ms | GB/s | % of a copy of as many bytes | NumPy reference ms | x reference |")
    log("|---|---|---|---|---|---|")
    rows = []
    for name, nbytes, fast, ref in kernel_cases(scale):
        fast()  # compile or load from the cache
        if ref is not None and not _same(fast(), ref()):
            raise AssertionError(f"{name}: the Numba kernel differs from its NumPy reference")
        best = ref_best = math.inf
        for _ in range(reps):
            best = min(best, _timed(fast))
            if ref is not None:
                ref_best = min(ref_best, _timed(ref))
        ceiling = copy_ceiling(nbytes, reps=max(5, reps // 2))
        ref_ms = ref_best * 1e3 if ref is not None else None
        gbs = nbytes / best / 1e9
        rows.append(
            {
                "kernel": name,
                "ms": best * 1e3,
                "gb_s": gbs,
                "ceiling_gb_s": ceiling,
                "reference_ms": ref_ms,
            }
        )
        ref_text = "- | -" if ref_ms is None else f"{ref_ms:.3f} | {best * 1e3 / ref_ms:.2f}"
        log(f"| {name} | {best * 1e3:.3f} | {gbs:.1f} | {gbs / ceiling:.0%} | {ref_text} |")
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
