"""crosscheck: CPU float64 against another device/dtype, op by op and gradient by gradient.

The report logic is tested on the CPU with devices=("cpu", "cpu"): the checked run is float32
with the Numba fast paths on, the reference float64 NumPy. The GPU case is marked gpu.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F


def _mlp_inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = gg.tensor(rng.standard_normal((8, 5)))
    w1 = gg.tensor(rng.standard_normal((16, 5)) * 0.4, requires_grad=True)
    b1 = gg.tensor(rng.standard_normal(16) * 0.1, requires_grad=True)
    w2 = gg.tensor(rng.standard_normal((3, 16)) * 0.4, requires_grad=True)
    y = gg.tensor(rng.integers(0, 3, 8), dtype=gg.int64)
    return [x, w1, b1, w2, y]


def _mlp(x, w1, b1, w2, y):
    h = F.linear(x, w1, b1).tanh()
    return F.cross_entropy(F.linear(h, w2), y)


def test_crosscheck_reports_every_op_in_graph_order_then_each_gradient():
    report = gg.crosscheck(_mlp, _mlp_inputs(), devices=("cpu", "cpu"))
    forward = [e for e in report.entries if e.kind == "forward"]
    grads = [e for e in report.entries if e.kind == "grad"]
    assert [e.index for e in forward] == list(range(len(forward)))
    assert [e.name for e in forward][-1] == "cross_entropy"
    assert "tanh" in [e.name for e in forward]
    assert [g.name for g in grads] == ["input 1", "input 2", "input 3"]
    assert report.ok and report.first_failure is None
    assert "crosscheck: cpu float64 (reference) vs cpu float32" in str(report)


def test_crosscheck_names_the_first_diverging_node():
    def fn(x):
        y = x.exp()
        y = y * 1.01 if y.dtype == gg.float32 else y * 1.0  # a bug in the checked run only
        return y.sum()

    x = gg.tensor([0.5, -1.0, 2.0], requires_grad=True)
    with pytest.raises(gg.CrossCheckError, match=r"first diverges .* at op #1 'mul' \(3,\)") as e:
        gg.crosscheck(fn, [x], devices=("cpu", "cpu"))
    report = e.value.report
    assert report.entries[0].ok and not report.entries[1].ok
    assert e.value.first is report.entries[1]
    assert e.value.first.worst == (2,)  # the largest value has the largest error


def test_crosscheck_catches_a_wrong_gradient(monkeypatch):
    exp = gg.OPS["exp"]
    right = exp.bwd

    def wrong(xp, dout, out):  # a backward that is off in float32 only
        (dx,) = right(xp, dout, out)
        return (dx * 1.01 if dx.dtype == np.float32 else dx,)

    monkeypatch.setattr(exp, "bwd", wrong)
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(gg.CrossCheckError, match=r"first diverges .* at the input 0 \(2,\)") as e:
        gg.crosscheck(lambda x: x.exp().sum(), [x], devices=("cpu", "cpu"))
    assert all(entry.ok for entry in e.value.report.entries if entry.kind == "forward")


def test_crosscheck_refuses_runs_that_take_different_paths():
    def fn(x):
        return x.relu().sum() if x.dtype == gg.float64 else x.tanh().sum()

    with pytest.raises(gg.CrossCheckError, match="different paths at op #0"):
        gg.crosscheck(fn, [gg.tensor([1.0], requires_grad=True)], devices=("cpu", "cpu"))


def test_crosscheck_treats_matching_nans_and_infinities_as_equal():
    x = gg.tensor([0.0, 1.0, -1.0], requires_grad=False)
    report = gg.crosscheck(lambda x: (x.log() * 2).sum(), [x], devices=("cpu", "cpu"))
    assert report.ok  # log(0) = -inf and log(-1) = nan on both sides


def test_crosscheck_leaves_config_and_hooks_as_they_were():
    from gpugrad import state

    gg.config.kernels = True
    with pytest.raises(gg.CrossCheckError):
        gg.crosscheck(lambda x: (x * (1.1 if x.dtype == gg.float32 else 1)).sum(),
                      [gg.tensor([3.0], requires_grad=True)], devices=("cpu", "cpu"))  # fmt: skip
    assert state.forward_hooks == [] and gg.config.kernels is True


@pytest.mark.gpu
def test_crosscheck_gpu_float32_matches_cpu_float64_on_an_mlp():
    if not gg.cuda.is_available():
        pytest.skip(f"no CUDA device: {gg.cuda.unavailable_reason()}")
    report = gg.crosscheck(_mlp, _mlp_inputs(), rtol=1e-4, atol=1e-5)
    assert report.ok, str(report)
    assert report.devices == ("cpu", "cuda:0")


@pytest.mark.gpu
@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("loss", ["cross_entropy", "bce", "mse"])
def test_crosscheck_gpu_kernels_in_a_training_graph(act, loss):
    if not gg.cuda.is_available():
        pytest.skip(f"no CUDA device: {gg.cuda.unavailable_reason()}")
    rng = np.random.default_rng(1)
    x = gg.tensor(rng.standard_normal((32, 12)))
    w = gg.tensor(rng.standard_normal((12, 6)) * 0.3, requires_grad=True)
    target = {
        "cross_entropy": gg.tensor(rng.integers(0, 6, 32), dtype=gg.int64),
        "bce": gg.tensor(rng.random((32, 6))),
        "mse": gg.tensor(rng.standard_normal((32, 6))),
    }[loss]

    def fn(x, w, t):
        h = getattr(F, act)(x @ w)
        h = F.log_softmax(h, axis=1) + F.softmax(h, axis=0)
        if loss == "cross_entropy":
            return F.cross_entropy(h, t)
        if loss == "bce":
            return F.binary_cross_entropy_with_logits(h, t)
        return F.mse_loss(h, t)

    assert gg.crosscheck(fn, [x, w, target]).ok
