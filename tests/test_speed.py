"""The fast paths keep their promises: float32 stays float32, weight gradients are not copied,
the benchmark's peers agree with gpugrad, and CUDA graphs refuse clearly without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import nn, optim, state
from gpugrad.dispatch import Op


def _mlp_step(activation):
    gg.manual_seed(0)
    model = nn.MLP([12, 16, 16, 5], activation=activation)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = gg.tensor(np.random.default_rng(0).standard_normal((8, 12), dtype=np.float32))
    y = gg.tensor(np.arange(8) % 5)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return model, loss


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("kernels", [True, False])
def test_float32_mlp_step_makes_no_float64_arrays(monkeypatch, activation, kernels):
    gg.config.kernels = kernels
    seen = []
    monkeypatch.setattr(state, "forward_hooks", [lambda op, out: seen.append((op.name, out))])
    run_backward = Op.run_backward

    def checked(self, xp, dout, saved):
        grads, owns = run_backward(self, xp, dout, saved)
        seen.extend((f"{self.name} backward", g) for g in grads if g is not None)
        return grads, owns

    monkeypatch.setattr(Op, "run_backward", checked)
    model, loss = _mlp_step(activation)
    upcast = [name for name, a in seen if getattr(a, "dtype", None) == np.float64]
    assert not upcast, f"float64 arrays from {upcast}"
    assert loss.dtype == np.float32
    for p in model.parameters():
        assert p.dtype == np.float32 and p.grad.dtype == np.float32


def test_linear_weight_gradients_arrive_contiguous_without_a_copy():
    model = nn.MLP([6, 4, 3])
    x = gg.tensor(np.ones((5, 6), np.float32))
    model(x).sum().backward()
    for p in model.parameters():
        assert p.grad.data.flags.c_contiguous and p.grad.shape == p.shape


def test_a_gradient_that_shares_memory_is_still_copied():
    w = gg.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    z = w.T * 2.0
    keep = z.T  # the graph's output is a view; a second view must not become w.grad as is
    keep.sum().backward()
    before = w.grad.numpy().copy()
    keep.data[...] = 7.0
    np.testing.assert_array_equal(w.grad.numpy(), before)


@pytest.fixture(scope="module")
def bench_pool():
    """One worker process per installed peer, one thread each (as ``gpugrad bench`` runs)."""
    from gpugrad.benchmark.steps import workers

    with workers(available_peers(), threads=1) as pool:
        yield pool


def available_peers():
    from gpugrad.benchmark.peers import available_peers

    return available_peers()


@pytest.mark.parametrize("config", ["tiny", "deep"])
def test_benchmark_peers_agree_with_gpugrad(bench_pool, config):
    from gpugrad.benchmark.problems import CONFIGS
    from gpugrad.benchmark.steps import verify

    verify(CONFIGS[config], bench_pool)


def test_benchmark_check_refuses_a_peer_that_differs():
    from gpugrad.benchmark.steps import compare

    ref = {"loss": 2.0, "weights": [np.ones(3, np.float32)]}
    compare("tiny", "numpy", ref, ref)
    with pytest.raises(AssertionError, match="loss"):
        compare("tiny", "numpy", {**ref, "loss": 2.1}, ref)
    with pytest.raises(AssertionError, match="parameter 0"):
        compare("tiny", "numpy", {**ref, "weights": [np.full(3, 1.01, np.float32)]}, ref)


def test_bench_runs_every_peer_in_a_process_of_its_own(bench_pool):
    """The table comes from one worker process per peer, and no worker loads another peer's
    library: timed in one process, PyTorch's thread pools collided with the others'."""
    import os

    from gpugrad.benchmark.steps import run, table

    quick = {"rounds": 1, "round_s": 0.01, "pause": 0, "patience_s": 0}
    result = run(["tiny"], log=lambda *_: None, pool=bench_pool, **quick)
    text = table(result)
    assert text.count("\n") == 3 and text.count("| tiny | 64 |") == 2  # eager and cpu_graph
    assert set(result["configs"]["tiny"]["ms"]) == set(bench_pool)
    assert set(bench_pool) >= {"gpugrad", "gpugrad-graph", "numpy"}
    workers = result["workers"]
    pids = {w["pid"] for w in workers.values()}
    assert len(pids) == len(workers) and os.getpid() not in pids
    for ours in ("gpugrad", "gpugrad-graph"):
        assert {"gpugrad", "numba"} <= set(workers[ours]["loaded"])
        assert "torch" not in workers[ours]["loaded"]
    assert workers["numpy"]["loaded"] == ["numpy"]
    if "torch" in workers:
        assert "torch" in workers["torch"]["loaded"]
        assert not {"gpugrad", "numba"} & set(workers["torch"]["loaded"])


def test_bench_command_parses_its_options():
    from gpugrad.cli import build_parser

    args = build_parser().parse_args(["bench", "--configs", "tiny", "--rounds", "2"])
    assert (args.configs, args.rounds, args.kernels) == ("tiny", 2, False)


def test_cuda_graph_without_a_gpu_says_why():
    if gg.cuda.is_available():
        pytest.skip("a GPU is present")
    x = gg.zeros((2, 2))
    with pytest.raises(RuntimeError, match="CUDA graphs need a GPU"):
        gg.cuda.graph(lambda t: t, x)


@pytest.mark.gpu
def test_cuda_graph_replays_a_training_step_like_eager():
    if not gg.cuda.is_available():
        pytest.skip(f"no CUDA device: {gg.cuda.unavailable_reason()}")
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((32, 8), dtype=np.float32) for _ in range(4)]
    ys = [rng.integers(0, 3, 32) for _ in range(4)]

    def build():
        gg.manual_seed(0)
        model = nn.MLP([8, 16, 3], device="cuda")
        return model, optim.SGD(model.parameters(), lr=0.1)

    def stepper(model, opt):
        def step(x, y):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        return step

    eager_model, eager_opt = build()
    graphed_model, graphed_opt = build()
    eager = stepper(eager_model, eager_opt)
    x0, y0 = gg.tensor(xs[0], device="cuda"), gg.tensor(ys[0], device="cuda")
    captured = gg.cuda.graph(stepper(graphed_model, graphed_opt), x0, y0, warmup=1)
    eager(x0, y0)  # the capture's one warm-up step ran for real; the capture itself did not
    for x, y in zip(xs, ys, strict=True):
        eager_loss = eager(gg.tensor(x, device="cuda"), gg.tensor(y, device="cuda"))
        loss = captured(x, y)
        captured.synchronize()
        assert abs(loss.item() - eager_loss.item()) < 1e-4
    for a, b in zip(graphed_model.parameters(), eager_model.parameters(), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
