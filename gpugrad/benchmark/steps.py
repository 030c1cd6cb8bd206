"""The ``gpugrad bench`` table: training-step times of every peer, each in its own process.

Every peer (``peers.py``) runs in a long-lived worker process of its own (``worker.py``), started
with the same thread count in every BLAS/OpenMP variable and pinned again with threadpoolctl
(and ``torch.set_num_threads``). Before timing a config, each peer runs one step from the same
initial weights and batch, and the parent compares its loss and every updated parameter with
gpugrad's. Timing runs in rounds: each round asks every worker in turn (the order rotates) for
the same number of steps, with a pause before each so that the previous worker's BLAS threads
stop spinning first; a worker times its steps itself, so the pipe costs nothing. The table
reports medians over rounds. On a shared machine, other processes' CPU time during each block
is read from /proc/stat: a block disturbed by them is run again, and the table's last column
says how busy the machine still was during the blocks it kept.

Memory: before timing, each worker builds its peer again from nothing and runs two steps while
tracemalloc (NumPy's allocations, so gpugrad and the NumPy peer) and the kernel's peak-RSS
counter (every peer) watch; both are reported above the level before the model existed.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import statistics
import time

import numpy as np

from .machine import busy_seconds, machine, versions
from .peers import available_peers
from .problems import CONFIGS, Config
from .worker import Worker

PAUSE_S = 0.25  # before each timed block: OpenBLAS's idle threads spin ~0.1 s before sleeping
QUIET = 0.1  # the share of the machine other processes may keep busy during a timed block
PATIENCE_S = 60.0  # how long one run may wait for quiet, in all
CPUS = os.cpu_count() or 1


@contextlib.contextmanager
def workers(peers, threads: int):
    """{peer: Worker}, one process each, closed on exit."""
    started = {}
    try:
        for name in peers:
            started[name] = Worker(name, threads)
        yield started
    finally:
        for w in started.values():
            w.close()


def verify(cfg: Config, pool: dict) -> None:
    """Two steps of every peer from the same start must give gpugrad's loss and weights."""
    ref = pool["gpugrad"].call("check", config=cfg.to_dict(), seed=1)
    for name, w in pool.items():
        if name == "gpugrad":
            continue
        got = w.call("check", config=cfg.to_dict(), seed=1)
        compare(cfg.name, name, got, ref)


def compare(config: str, name: str, got: dict, ref: dict) -> None:
    if not math.isclose(got["loss"], ref["loss"], rel_tol=1e-4, abs_tol=1e-5):
        raise AssertionError(f"{config}: {name} loss {got['loss']} != gpugrad {ref['loss']}")
    if len(got["weights"]) != len(ref["weights"]):
        raise AssertionError(f"{config}: {name} has a different number of parameters")
    for k, (a, b) in enumerate(zip(got["weights"], ref["weights"], strict=True)):
        if not np.allclose(a, b, rtol=1e-4, atol=1e-5):
            err = float(np.max(np.abs(a - b)))
            raise AssertionError(
                f"{config}: {name} parameter {k} after two steps differs from gpugrad's "
                f"(max abs error {err:.2e})"
            )


class Patience:
    """How long one run may wait, in all, for other processes to leave the CPUs alone."""

    def __init__(self, budget_s: float):
        self.left = budget_s

    def settle(self, pause: float, quiet: float) -> None:
        """Sleep ``pause``, then (while the budget lasts) until a 0.1 s window in which other
        processes, and our own idle workers' spinning threads, keep at most ``quiet`` busy."""
        time.sleep(pause)
        while self.left > 0:
            t0, busy0 = time.perf_counter(), busy_seconds()
            time.sleep(0.1)
            busy1, wall = busy_seconds(), time.perf_counter() - t0
            self.left -= wall
            if busy0 is None or busy1 is None or (busy1 - busy0) / (wall * CPUS) <= quiet:
                return


def timed_block(worker, steps: int) -> tuple[float, float]:
    """(seconds, load): ``steps`` steps in ``worker``, and the share of the machine's CPUs that
    other processes kept busy meanwhile (from /proc/stat; 0 where there is none)."""
    busy0, t0 = busy_seconds(), time.perf_counter()
    seconds, own_cpu = worker.call("time_cpu", steps=steps)
    busy1, wall = busy_seconds(), time.perf_counter() - t0
    if busy0 is None or busy1 is None:
        return seconds, 0.0
    return seconds, max(0.0, busy1 - busy0 - own_cpu) / (wall * CPUS)


def time_config(
    cfg: Config, pool: dict, rounds: int, round_s: float, pause=PAUSE_S, patience=None, device="cpu"
) -> dict:
    """Median ms per step of each peer, interleaved in rounds with a rotating order.

    Before each block the run waits for a quiet machine, and a block during which other
    processes still kept more than ``QUIET`` of it busy is run again, both while ``patience``
    lasts; the load during every kept block is recorded, so a table from a busy machine says so.
    """
    patience = patience or Patience(0.0)
    first = {name: w.call("build", config=cfg.to_dict(), device=device) for name, w in pool.items()}
    slowest = max(first.values())
    steps = max(1, min(200, int(round_s / (slowest * len(pool)))))
    samples = {name: [] for name in pool}
    loads = {name: [] for name in pool}
    rerun = 0
    names = list(pool)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            patience.settle(pause, QUIET)
            seconds, load = timed_block(pool[name], steps)
            while load > QUIET and patience.left > 0:
                rerun += 1
                patience.left -= seconds
                patience.settle(pause, QUIET)
                seconds, load = timed_block(pool[name], steps)
            samples[name].append(seconds / steps * 1e3)
            loads[name].append(load)
    return {
        "steps_per_round": steps,
        "ms": {k: statistics.median(v) for k, v in samples.items()},
        "ms_min": {k: min(v) for k, v in samples.items()},
        "samples_ms": samples,
        "other_load": loads,
        "other_load_max": max(max(v) for v in loads.values()),
        "blocks_rerun": rerun,
    }


def run(
    configs,
    rounds: int = 7,
    round_s: float = 1.5,
    threads: int | None = None,
    memory: bool = True,
    peers=None,
    pause: float = PAUSE_S,
    log=print,
    pool: dict | None = None,
    patience_s: float = PATIENCE_S,
) -> dict:
    """Verify, time and measure every config; returns the results as a dict (see --json).

    ``pool``: workers already started (``workers()``), else one is started for ``peers``.
    """
    threads = threads or os.cpu_count() or 1
    peers = list(pool or peers or available_peers())
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(peers),
        "isolation": "one worker process per peer",
        "rounds": rounds,
        "configs": {},
    }
    patience = Patience(patience_s)
    with contextlib.nullcontext(pool) if pool else workers(peers, threads) as pool:
        threads = next(iter(pool.values())).threads
        log(f"# gpugrad bench | {result['machine']} | {result['versions']}")
        log(f"# {threads} threads per peer, one process per peer | {rounds} rounds, medians")
        for name in configs:
            cfg = CONFIGS[name]
            t0 = time.perf_counter()
            verify(cfg, pool)
            if memory:
                mem = {n: w.call("memory", config=cfg.to_dict()) for n, w in pool.items()}
            row = time_config(cfg, pool, rounds, round_s, pause, patience)
            row.update(config=cfg.describe(), batch=cfg.batch, gflop=cfg.flops() / 1e9)
            if memory:
                row["memory"] = mem
            result["configs"][name] = row
            log(
                f"# {name}: "
                + ", ".join(f"{k} {v:.3f} ms" for k, v in row["ms"].items())
                + f" ({row['steps_per_round']} steps/round, {time.perf_counter() - t0:.1f} s; "
                f"others' load up to {row['other_load_max']:.0%}, "
                f"{row['blocks_rerun']} blocks rerun)"
            )
        result["patience_left_s"] = max(0.0, patience.left)
        result["workers"] = {
            n: {"pid": w.info["pid"], "threads": w.call("pools"), "loaded": w.call("loaded")}
            for n, w in pool.items()
        }
    result["parent_pid"] = os.getpid()
    result["threads"] = "; ".join(f"{n}: {w['threads']}" for n, w in result["workers"].items())
    return result


def _mib(v):
    return "-" if v is None else f"{v:.0f}"


def table(result: dict) -> str:
    """The results as one markdown table: a row per config and gpugrad variant (eager, and
    replayed with gg.cpu_graph), each with its ratio to every peer."""
    runs = [r["ms"] for r in result["configs"].values()]
    ours = [n for n in ("gpugrad", "gpugrad-graph") if any(n in ms for ms in runs)]
    names = [n for n in ("numpy", "torch") if any(n in ms for ms in runs)]
    head = ["config", "batch", "layers", "gpugrad", "ms"]
    head += [f"{n} ms" for n in names] + [f"/ {n}" for n in names]
    head += ["GFLOP/s", "peak MiB (traced / RSS)"]
    head += [f"peak MiB {n} (RSS)" for n in names] + ["others' CPU load (max)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in result["configs"].items():
        ms = r["ms"]
        mem = r.get("memory", {})
        for ours_name in ours:
            if ours_name not in ms:
                continue
            g = ms[ours_name]
            label = "eager" if ours_name == "gpugrad" else "cpu_graph"
            cells = [name, str(r["batch"]), r["config"], label, f"{g:.3f}"]
            cells += [f"{ms[n]:.3f}" if n in ms else "-" for n in names]
            cells += [f"{g / ms[n]:.2f}" if n in ms else "-" for n in names]
            cells.append(f"{r['gflop'] / (g / 1e3):.1f}")
            gm = mem.get(ours_name, {})
            cells.append(f"{_mib(gm.get('traced_mib'))} / {_mib(gm.get('rss_mib'))}")
            cells += [_mib(mem.get(n, {}).get("rss_mib")) for n in names]
            cells.append(f"{r['other_load_max']:.0%}" if "other_load_max" in r else "-")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
