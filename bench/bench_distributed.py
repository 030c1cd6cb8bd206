"""Data-parallel training throughput on the CPU: 1 rank against N ranks under mpirun.

    python bench/bench_distributed.py                      # 1 and 2 ranks, default model
    python bench/bench_distributed.py --runs 1x8,2x4,4x2,8x1 --hidden 1024,1024 --batch 1024

Each configuration is a fresh ``mpirun -n N`` job running this file with ``--worker``: an MLP
(784 inputs, 10 classes, like MNIST) on random data, ``--batch`` samples per step in total
(each rank computes ``batch / N`` of them), Adam, ``DistributedOptimizer`` averaging the
gradients. Before timing, the worker checks that the ranks' parameters are still identical after
the warm-up steps. It reports samples/s for the whole job and the share of a step spent in the
gradient all-reduce. A run ``RxT`` is R ranks with T BLAS/Numba threads each; the default
compares all cores in one process (1xC), half of them (1xC/2) and two processes on half each
(2xC/2), so the 2-rank row uses the same hardware as the first and twice that of the second.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(args) -> None:
    import numpy as np

    import gpugrad as gg
    import gpugrad.distributed as dist
    import gpugrad.functional as F
    from gpugrad import nn, optim
    from gpugrad.distributed.optimizer import check_same

    dist.init("mpi" if dist.launch_info().world_size > 1 else "auto")
    rank, n = dist.rank(), dist.world_size()
    sizes = [784, *args.hidden, 10]
    gg.manual_seed(0)
    model = nn.MLP(sizes, activation="relu")
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-3))
    rng = np.random.default_rng(rank)
    local = args.batch // n
    x = gg.tensor(rng.normal(size=(local, 784)).astype(np.float32))
    y = gg.tensor(rng.integers(0, 10, local))

    def step(timings=None):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        t = time.perf_counter()
        opt.synchronize()
        if timings is not None:
            timings.append(time.perf_counter() - t)
        opt.step()

    for _ in range(args.warmup):
        step()
    # Verify before timing: after the warm-up steps every rank must hold the same weights.
    digest = hashlib.sha256(b"".join(p.numpy().tobytes() for p in model.parameters()))
    check_same(digest.hexdigest(), "parameters after warm-up")
    comm = []
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(comm)
    dist.barrier()
    seconds = time.perf_counter() - t0
    if rank == 0:
        params = sum(p.size for p in model.parameters())
        try:
            from mpi4py import MPI

            library = MPI.Get_library_version().splitlines()[0].strip()
        except ImportError:
            library = "no MPI"
        row = {
            "mpi": library,
            "ranks": n,
            "threads_per_rank": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
            "model": "-".join(map(str, sizes)),
            "parameters": params,
            "batch": args.batch,
            "steps": args.steps,
            "samples_per_s": args.batch * args.steps / seconds,
            "ms_per_step": 1e3 * seconds / args.steps,
            "allreduce_ms": 1e3 * float(np.median(comm)),
            "allreduce_mb": params * 4 / 2**20,
        }
        print("RESULT " + json.dumps(row), flush=True)
    dist.shutdown()


def _mpirun() -> str | None:
    for c in (Path(sys.executable).parent / "mpirun", shutil.which("mpirun")):
        if c and Path(c).exists():
            return str(c)
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    cores = os.cpu_count() or 2
    default_runs = f"1x{cores},1x{max(1, cores // 2)},2x{max(1, cores // 2)}"
    p.add_argument("--runs", default=default_runs, help=f"RANKSxTHREADS, default {default_runs}")
    p.add_argument("--hidden", default="512,256", help="hidden sizes, default 512,256")
    p.add_argument("--batch", type=int, default=512, help="global batch per step, default 512")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.hidden = [int(h) for h in args.hidden.split(",") if h]
    if args.worker:
        worker(args)
        return 0
    mpirun = _mpirun()
    if mpirun is None:
        print("bench_distributed: needs mpirun and mpi4py (pip install mpi4py mpich)")
        return 1
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    extra = ["--oversubscribe"] if "Open MPI" in version else []
    rows = []
    for run in args.runs.split(","):
        n, threads = (int(v) for v in run.lower().split("x"))
        threads = str(threads)
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            OMP_NUM_THREADS=threads,
            OPENBLAS_NUM_THREADS=threads,
            MKL_NUM_THREADS=threads,
            NUMBA_NUM_THREADS=threads,
        )
        forwarded = [f"--{k}={v}" for k, v in (("batch", args.batch), ("steps", args.steps))]
        forwarded += [f"--warmup={args.warmup}", f"--hidden={','.join(map(str, args.hidden))}"]
        cmd = [mpirun, *extra, "-n", str(n), sys.executable, __file__, "--worker", *forwarded]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            return 1
        rows.append(json.loads(lines[0][7:]))
    first = rows[0]
    print(
        f"CPU: {os.cpu_count()} cores | model {first['model']} ({first['parameters']:,} "
        f"parameters, {first['allreduce_mb']:.2f} MB of float32 gradients) | global batch "
        f"{first['batch']} | {first['mpi']}"
    )
    print("ranks  threads/rank  samples/s  ms/step  all-reduce ms  vs first row")
    for r in rows:
        print(
            f"{r['ranks']:>5}  {r['threads_per_rank']:>12}  {r['samples_per_s']:>9,.0f}  "
            f"{r['ms_per_step']:>7.2f}  {r['allreduce_ms']:>13.3f}  "
            f"{r['samples_per_s'] / first['samples_per_s']:>7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
