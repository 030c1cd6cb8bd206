"""A long run: 2,000 small training steps leak nothing and repeat bit for bit.

Leaks in an autodiff library show up only over many steps: a graph kept alive by a cached
reference, optimizer state that grows per step, a buffer cache keyed by something that changes.
tracemalloc sees every Python-level allocation, NumPy arrays included; on the GPU, CuPy's pool
reports the bytes in use.

The CPU run measures in a fresh interpreter: CPython keeps freed small objects (tuples, for
one) on free lists that tracemalloc still counts, and how full those lists already are depends
on every test that ran before in the same process.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import nn, optim
from gpugrad.engine import Node

STEPS = 2000
WARMUP = 500  # caches (Numba dispatch, optimizer buckets, free lists) fill during these


def _live_nodes() -> int:
    # type() reads the C-level type: isinstance() would also read __class__, which some
    # objects (torch.distributed.reduce_op) turn into a deprecation warning
    return sum(type(o) is Node for o in gc.get_objects())


def _run(device, seed, probe=None):
    """Train a tiny MLP; call probe(step) at a few checkpoints; return losses and weights."""
    gg.manual_seed(seed)
    model = nn.MLP([8, 16, 3], activation="tanh").to(device)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((8, 16, 8)).astype(np.float32)
    ts = rng.integers(0, 3, (8, 16))
    batches = [
        (gg.tensor(x, device=device), gg.tensor(t, device=device))
        for x, t in zip(xs, ts, strict=True)
    ]
    losses = np.empty(STEPS, np.float32)
    for step in range(STEPS):
        x, t = batches[step % len(batches)]
        loss = F.cross_entropy(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses[step] = loss.item()
        if probe is not None and step + 1 in (WARMUP, STEPS // 2, STEPS):
            probe(step + 1)
    return losses, [p.numpy().copy() for p in model.parameters()]


def measure_cpu_run() -> dict:
    """Train, probing live nodes and traced memory; the report test_long_run checks."""
    memory, nodes = {}, {}

    def probe(step):
        nodes[step] = _live_nodes()
        memory[step] = tracemalloc.get_traced_memory()[0]

    # The cyclic collector stays off: graphs must be freed by reference counting alone (no
    # cycles), and a full collection of the test session's heap would dominate the run time.
    gc.disable()
    tracemalloc.start()
    try:
        losses, params = _run("cpu", seed=0, probe=probe)
    finally:
        tracemalloc.stop()
        gc.enable()
    gc.disable()
    try:
        losses2, params2 = _run("cpu", seed=0)
    finally:
        gc.enable()
    same = losses.tobytes() == losses2.tobytes() and all(
        a.tobytes() == b.tobytes() for a, b in zip(params, params2, strict=True)
    )
    return {
        "first_loss": float(losses[0]),
        "last_loss": float(losses[-1]),
        "nodes": nodes,
        "memory": memory,
        "repeats_bitwise": same,
    }


def test_2000_steps_leak_no_memory_or_nodes_and_repeat_bitwise_on_the_cpu():
    here = Path(__file__).resolve().parent
    code = (
        f"import json, sys; sys.path.insert(0, {str(here)!r}); import test_long_run as t; "
        "print(json.dumps(t.measure_cpu_run()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    nodes = {int(k): v for k, v in report["nodes"].items()}
    memory = {int(k): v for k, v in report["memory"].items()}
    assert report["last_loss"] < report["first_loss"], "the run did not train"
    assert nodes[WARMUP] == nodes[STEPS // 2] == nodes[STEPS], f"live nodes grew: {nodes}"
    growth = memory[STEPS] - memory[WARMUP]
    # A leak of one small array per step would be >= 2,000 * 64 bytes; allow noise below that.
    assert growth < 64 * 1024, (
        f"traced memory grew by {growth:,} bytes over {STEPS - WARMUP:,} steps"
    )
    assert memory[STEPS] - memory[STEPS // 2] < 32 * 1024, memory
    assert report["repeats_bitwise"], "same seed, different losses or weights"


@pytest.mark.gpu
def test_2000_steps_on_the_gpu_keep_the_pool_flat():
    reason = gg.cuda.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA device: {reason}")
    import cupy

    pool = cupy.get_default_memory_pool()
    used, nodes = {}, {}

    def probe(step):
        gg.cuda.synchronize()
        used[step] = pool.used_bytes()
        nodes[step] = _live_nodes()

    gg.config.deterministic = True  # bias_act's backward without atomics: bitwise repeatable
    losses, params = _run("cuda", seed=0, probe=probe)
    assert used[WARMUP] == used[STEPS // 2] == used[STEPS], f"pool use grew: {used}"
    assert nodes[WARMUP] == nodes[STEPS], f"live nodes grew: {nodes}"
    losses2, params2 = _run("cuda", seed=0)
    assert losses.tobytes() == losses2.tobytes()
