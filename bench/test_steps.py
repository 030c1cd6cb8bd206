"""Training steps per config: gpugrad, the hand-written NumPy MLP and PyTorch eager."""

from __future__ import annotations

import pytest

from gpugrad.benchmark import CONFIGS, available_peers, make_problem, verify

PEERS = {cls.name: cls for cls in available_peers()}


@pytest.mark.parametrize("peer", ["gpugrad", "numpy", "torch"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_step(benchmark, config, peer):
    if peer not in PEERS:
        pytest.skip(f"{peer} is not installed")
    cfg = CONFIGS[config]
    if peer != "gpugrad":
        verify(cfg, [PEERS["gpugrad"], PEERS[peer]])  # check before timing
    model = PEERS[peer](cfg, *make_problem(cfg))
    model.step()
    benchmark.group = f"step {config}: {cfg.describe()}, batch {cfg.batch}"
    benchmark.extra_info["gflop"] = cfg.flops() / 1e9
    rounds = 3 if config == "wide" else 10
    benchmark.pedantic(model.step, rounds=rounds, iterations=1, warmup_rounds=1)
