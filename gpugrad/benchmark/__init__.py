"""``gpugrad bench``: training steps against hand-written NumPy and PyTorch, and the CPU kernels.

- ``problems``: the four MLP configs, their data and initial weights;
- ``peers``: gpugrad, the hand-written NumPy MLP and PyTorch eager, one training step each;
- ``worker``: one process per peer, driven over a pipe (the isolation);
- ``steps``: the table of ``gpugrad bench`` (checked first, interleaved rounds, medians);
- ``kernels``: ``gpugrad bench --kernels``, each Numba kernel in GB/s against a large copy.

    gpugrad bench                          # all four configs, markdown table
    gpugrad bench --configs tiny,deep --rounds 5 --json out.json
    gpugrad bench --kernels                # Numba kernels: GB/s against a large copy
"""

from __future__ import annotations

import json
import time

from .problems import CONFIGS


def main(args) -> int:
    """Entry point of ``gpugrad bench`` (arguments parsed by ``gpugrad.cli``)."""
    if args.kernels:
        import datetime
        import os

        from .kernels import kernel_report
        from .machine import machine, thread_limits, versions

        threads = thread_limits(args.threads or os.cpu_count() or 1)
        date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        rows = kernel_report(reps=args.reps)
        load = max((r["other_load"] for r in rows), default=0.0)
        print(f"\n{machine()} | {versions()} | threads: {threads}")
        print(f"{date} | others' CPU load during the rows: at most {load:.0%}")
        if args.json:
            result = {
                "date": date,
                "machine": machine(),
                "versions": versions(),
                "threads": threads,
                "reps": args.reps,
                "other_load_max": load,
                "kernels": rows,
            }
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
        return 0
    from .steps import run, table

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"gpugrad bench: unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    t0 = time.perf_counter()
    result = run(configs, rounds=args.rounds, threads=args.threads, memory=not args.no_memory)
    result["seconds"] = time.perf_counter() - t0
    print()
    print(table(result))
    print(f"\n{result['machine']} | {result['versions']}")
    print(f"threads per peer: {result['threads']}")
    took = result["seconds"]
    print(
        f"{result['date']} | one process per peer | {args.rounds} rounds, median ms per step | "
        f"{took:.0f} s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0
