"""GPU kernel benchmarks: verify each kernel, then time it against the card's own ceilings and
against what it replaces.

Every row of ``gpu_cases.py`` (the optimizer steps and gradient clipping: ``gpu_optim_cases.py``)
is first checked against its reference (the op's CuPy composition on float64 copies of the
inputs; for an in-place update, the reference on host copies); a kernel that fails is reported,
not timed. Then three things are timed in the same run, each with CUDA events after a warm-up,
median of many repetitions, rotating between several input sets so repeats do not just hit L2:

- the kernel;
- the CuPy composition it replaces (the op's reference: what runs without the kernel);
- PyTorch's op for the same work on the same memory, where PyTorch is installed (for an
  in-place update, PyTorch's optimizer or ``nn.utils`` function on copies, its state seeded
  from the case's buffers).

Bytes per call come from the arrays a call reads and writes (``gpu_cases.traffic``), FLOPs from
the operands' shapes. Ceilings are measured in the same run: a large device-to-device copy gives
the bandwidth memory-bound rows are reported against (GB/s and % of copy), cuBLAS SGEMM the rate
for the tiled matmul.

    python bench/gpu_bench.py                       # everything, results to bench/results/
    python bench/gpu_bench.py --family softmax_xent --reps 50
    python bench/gpu_bench.py --dry-run --out /tmp/r   # no GPU: cases built and checked on NumPy
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
sys.path.insert(0, str(ROOT / "bench"))

from gpu_cases import FAMILIES as KERNEL_FAMILIES  # noqa: E402
from gpu_cases import arrays_in, cases, shape_of, traffic  # noqa: E402

FAMILIES = (*KERNEL_FAMILIES, "training", "steps")


def _check(got, ref, what, rtol=1e-4, atol=1e-5):
    import cupy as cp

    got, ref = arrays_in(got), arrays_in(ref)
    if len(got) != len(ref):
        raise AssertionError(f"{what}: {len(got)} arrays returned, the reference gives {len(ref)}")
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        g, r = cp.asarray(g, cp.float64), cp.asarray(r, cp.float64)
        bad = ~cp.isclose(g, r, rtol=rtol, atol=atol, equal_nan=True)
        if bool(bad.any()):
            raise AssertionError(f"{what}: output {k}: {int(bad.sum())} of {bad.size} values off")


def _wide(value, xp):
    """float32 device arrays (also inside lists) as float64 copies, for the reference."""
    if isinstance(value, list):
        return [_wide(v, xp) for v in value]
    if hasattr(value, "dtype") and value.dtype == np.float32 and not isinstance(value, np.ndarray):
        return value.astype(xp.float64)
    return value


def _host(value):
    """Device arrays (also inside lists) as NumPy copies."""
    if isinstance(value, list):
        return [_host(v) for v in value]
    return value.get() if hasattr(value, "get") and not isinstance(value, np.ndarray) else value


def verify(cp, case):
    """The kernel against the reference; returns the kernel's result of argument set 0."""
    args = case.args(0)
    if case.updated:  # in place: the reference on host copies, then the kernel on the device
        ref = [_host(a) for a in args]
        case.reference(np, *ref)
        got = case.kernel(cp, *args)
        for k in case.updated:
            _check(args[k], ref[k], f"{case.name} argument {k}", **case.tolerance)
        return got
    got = case.kernel(cp, *args)
    ref = case.reference(cp, *[_wide(a, cp) for a in args])
    _check(got, ref, case.name, **case.tolerance)
    return got


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


def torch_time_ms(torch, run, reps, warmup=3):
    """time_ms with PyTorch's events (its ops run on its current stream)."""
    for i in range(warmup):
        run(i)
    times = []
    for i in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        run(i)
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return float(np.median(times))


def _torch():
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, "torch.cuda is not available"
    return torch, None


def _as_torch(torch, value):
    if isinstance(value, list):
        return [_as_torch(torch, v) for v in value]
    if hasattr(value, "__cuda_array_interface__"):
        return torch.as_tensor(value, device="cuda")
    return value


def _torch_copy(torch, value):
    """Device arrays (also inside lists) as PyTorch copies on the GPU; the rest as it is."""
    if isinstance(value, list):
        return [_torch_copy(torch, v) for v in value]
    if hasattr(value, "__cuda_array_interface__"):
        return torch.as_tensor(value, device="cuda").clone()
    return value


def torch_run(torch, case):
    """run(i) for PyTorch's twin of ``case``: on the same memory, or for an in-place case its
    ``torch_step`` on copies of the arguments (the kernel's own stay as they are)."""
    if case.torch_step is not None:
        step = case.torch_step(torch, *[_torch_copy(torch, a) for a in case.args(0)])
        return lambda i: step()
    sets = [[_as_torch(torch, a) for a in case.args(i)] for i in range(len(case.sets))]
    return lambda i: case.torch(torch, *sets[i % len(sets)])


def kernel_row(cp, case, reps, ceil) -> dict:
    """Verify and time one case and its twins; errors are recorded, not raised."""
    row = {"family": case.family, "name": case.name, "shape": shape_of(case)}
    try:
        result = verify(cp, case)
        row["bytes"] = traffic(case, result)
        row["ms"] = time_ms(cp, lambda i: case.kernel(cp, *case.args(i)), reps)
    except Exception as e:  # recorded, so one broken kernel does not hide the others
        row["error"] = f"{type(e).__name__}: {e}"
        return row
    try:
        row["composition_ms"] = time_ms(cp, lambda i: case.reference(cp, *case.args(i)), reps)
    except Exception as e:
        row["composition_error"] = f"{type(e).__name__}: {e}"
    torch, why = _torch()
    row["torch_label"] = case.torch_label
    if torch is None:
        row["torch_error"] = why
    elif case.torch is not None or case.torch_step is not None:
        try:
            row["torch_ms"] = torch_time_ms(torch, torch_run(torch, case), reps)
        except Exception as e:
            row["torch_error"] = f"{type(e).__name__}: {e}"
    _rates(row, case, ceil)
    return row


def _rates(row, case, ceil):
    for key in ("", "composition_", "torch_"):
        ms = row.get(f"{key}ms")
        if ms is None:
            continue
        if case.flops:
            row[f"{key}TFLOPs"] = case.flops / ms / 1e9
        else:
            row[f"{key}GBps"] = row["bytes"] / ms / 1e6
    if case.flops:
        row["pct_cublas"] = 100 * row["TFLOPs"] / ceil["cublas_TFLOPs"]
    else:
        row["pct_copy"] = 100 * row["GBps"] / ceil["copy_GBps"]
    for key in ("composition", "torch"):
        if f"{key}_ms" in row:
            row[f"vs_{key}"] = row["ms"] / row[f"{key}_ms"]


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
    torch.compile(mode="reduce-overhead"), all from the same weights and batch, each peer in a
    worker process of its own (``gpugrad.benchmark.worker``), interleaved in up to 7 rounds;
    each row says its ratio to PyTorch eager."""
    import os

    from gpugrad.benchmark.peers import available_peers
    from gpugrad.benchmark.problems import CONFIGS
    from gpugrad.benchmark.steps import time_config, workers

    rows = []
    names = available_peers(("gpugrad", "gpugrad-graph", "torch", "torch-compile"))
    with workers(names, os.cpu_count() or 1) as pool:
        for name in ("tiny", "deep") if quick else ("tiny", "mnist", "wide", "deep"):
            # torch.compile only where there is a target against it (it compiles for minutes)
            targeted = name in ("tiny", "deep")
            sub = {k: w for k, w in pool.items() if k != "torch-compile" or targeted}
            try:  # one failing config must not hide the others
                rounds = min(reps, 7)
                ms = time_config(CONFIGS[name], sub, rounds, 0.5, pause=0.1, device="cuda")
            except Exception as e:
                rows.append({"family": "steps", "name": name, "error": f"{type(e).__name__}: {e}"})
                continue
            base = ms["ms"].get("torch")
            for label, value in ms["ms"].items():
                ratio = f" ({value / base:.2f} x torch eager)" if base else ""
                rows.append({"family": "steps", "name": f"{name} {label}{ratio}", "ms": value})
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
    rows = []
    if args.family in (*KERNEL_FAMILIES, "all"):
        size = "quick" if args.quick else "full"
        for case in cases(cp, args.family, size):
            rows.append(kernel_row(cp, case, args.reps, ceil))
            del case
            cp.get_default_memory_pool().free_all_blocks()
    peers = []
    if args.family in ("all", "training"):
        try:
            peers += training_rows(args.reps, args.quick)
        except Exception as e:
            peers.append({"name": "training step", "error": f"{type(e).__name__}: {e}"})
    if args.family == "steps":  # its own run in gpu_check.sh: torch.compile takes a while
        peers += step_rows(args.reps, args.quick)
    return {**info, **ceil, "rows": rows, "peers": peers}


def dry_run(family) -> dict:
    """No GPU: every case built at test size on NumPy, its reference run, its bytes counted
    (only the families are listed where gpugrad itself cannot be imported)."""
    families = [family] if family in KERNEL_FAMILIES else list(KERNEL_FAMILIES)
    rows = []
    try:
        for case in cases(np, family if family in KERNEL_FAMILIES else "all", "test"):
            result = case.reference(np, *case.args(0))
            row = {"family": case.family, "name": case.name, "shape": shape_of(case)}
            row.update(bytes=traffic(case, result), torch_label=case.torch_label)
            rows.append(row)
    except ImportError as e:
        why = f"cases not built: gpugrad cannot be imported here ({e})"
        rows = [{"family": f, "name": "-", "error": why} for f in families]
        return {"card": "dry-run", "status": f"dry run: no GPU; {why}", "rows": rows, "peers": []}
    status = "dry run: no GPU; cases built at test size on NumPy, references run, nothing timed"
    return {"card": "dry-run", "status": status, "rows": rows, "peers": []}


def _per_op(row) -> str:
    return f"{row['us']:.1f} us/op (target <= 15)" if "us" in row else ""


def _f(row, key, fmt):
    return format(row[key], fmt) if row.get(key) is not None else ""


def markdown(result) -> str:
    lines = [
        f"# GPU benchmarks: {result['card']} ({result['date']})",
        "",
        f"{result.get('status', '')}",
        "",
        f"copy ceiling {result.get('copy_GBps', float('nan')):.0f} GB/s, "
        f"cuBLAS SGEMM {result.get('cublas_TFLOPs', float('nan')):.1f} TFLOP/s. Each kernel "
        "row: the kernel, the CuPy composition it replaces (the op's reference), and PyTorch's "
        "op on the same memory; x = kernel time / twin time (below 1: the kernel is faster).",
        "",
        "| family | kernel | shape | bytes/call | ms | GB/s | % copy | TFLOP/s | % cuBLAS "
        "| CuPy composition ms | x composition | torch ms | x torch | torch op | note |",
        "|" + "---|" * 15,
    ]
    for r in result["rows"]:
        note = "; ".join(r[k] for k in ("error", "composition_error", "torch_error") if k in r)
        lines.append(
            f"| {r['family']} | {r['name']} | {r.get('shape', '')} | {_f(r, 'bytes', 'd')} | "
            f"{_f(r, 'ms', '.3f')} | {_f(r, 'GBps', '.0f')} | {_f(r, 'pct_copy', '.0f')} | "
            f"{_f(r, 'TFLOPs', '.1f')} | {_f(r, 'pct_cublas', '.0f')} | "
            f"{_f(r, 'composition_ms', '.3f')} | {_f(r, 'vs_composition', '.2f')} | "
            f"{_f(r, 'torch_ms', '.3f')} | {_f(r, 'vs_torch', '.2f')} | "
            f"{r.get('torch_label', '')} | {note} |"
        )
    if result.get("peers"):
        lines += ["", "| peer | ms | note |", "|---|---|---|"]
        for r in result["peers"]:
            lines.append(
                f"| {r['name']} | {_f(r, 'ms', '.3f')} | {r.get('error', '') or _per_op(r)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("all", *FAMILIES), default="all")
    parser.add_argument("--reps", type=int, default=30, help="timed repetitions per case")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--stem", help="file name stem (default: <date>_<card>_bench)")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: build and check cases")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    date = datetime.date.today().isoformat()
    if args.dry_run:
        result = dry_run(args.family)
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
    return 1 if failed and not args.dry_run else 0


if __name__ == "__main__":
    sys.exit(main())
