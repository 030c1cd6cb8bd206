"""Training steps per config: gpugrad (eager and gg.cpu_graph), the hand-written NumPy MLP
and PyTorch eager.

Each peer runs in a worker process of its own (``gpugrad.benchmark.worker``), with the same
thread count; its first two steps are checked against gpugrad's before it is timed. One
benchmark call runs ``steps`` steps in the worker, the same count for every peer of a config,
so the group's times compare directly; ``extra_info["ms_per_step"]`` is the worker's own
timing.
"""

from __future__ import annotations

import os
import time

import pytest

from gpugrad.benchmark.peers import available_peers
from gpugrad.benchmark.problems import CONFIGS
from gpugrad.benchmark.steps import PAUSE_S, compare
from gpugrad.benchmark.worker import Worker

PEERS = available_peers()
STEPS = {"tiny": 100, "mnist": 10, "wide": 1, "deep": 3}


@pytest.fixture(scope="module")
def pool():
    threads = os.cpu_count() or 1
    started = {name: Worker(name, threads) for name in PEERS}
    yield started
    for w in started.values():
        w.close()


@pytest.mark.parametrize("peer", ["gpugrad", "gpugrad-graph", "numpy", "torch"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_step(benchmark, pool, config, peer):
    if peer not in pool:
        pytest.skip(f"{peer} is not installed")
    cfg = CONFIGS[config]
    worker = pool[peer]
    if peer != "gpugrad":  # check before timing
        ref = pool["gpugrad"].call("check", config=cfg.to_dict(), seed=1)
        compare(config, peer, worker.call("check", config=cfg.to_dict(), seed=1), ref)
    worker.call("build", config=cfg.to_dict())
    steps = STEPS[config]
    benchmark.group = f"step {config}: {cfg.describe()}, batch {cfg.batch}, {steps} steps a call"
    benchmark.extra_info["gflop_per_step"] = cfg.flops() / 1e9
    seconds = []

    def call():
        seconds.append(worker.call("time", steps=steps))

    time.sleep(PAUSE_S)  # the previous worker's BLAS threads stop spinning
    rounds = 3 if config == "wide" else 10
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
    benchmark.extra_info["ms_per_step"] = sorted(seconds)[len(seconds) // 2] / steps * 1e3
