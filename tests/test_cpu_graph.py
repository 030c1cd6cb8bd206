"""gg.cpu_graph: a captured step replays exactly what the eager step computes."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import nn, optim


def _mlp(activation, opt_name):
    gg.manual_seed(0)
    model = nn.MLP([12, 16, 16, 5], activation=activation)
    if opt_name == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = optim.Adam(model.parameters(), lr=1e-2)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return model, step


def _batches(n=5, batch=8):
    rng = np.random.default_rng(0)
    xs = [gg.tensor(rng.standard_normal((batch, 12), dtype=np.float32)) for _ in range(n)]
    ys = [gg.tensor(rng.integers(0, 5, batch)) for _ in range(n)]
    return xs, ys


def _same_models(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_replay_matches_the_eager_step_bit_for_bit(activation, opt_name):
    eager_model, eager = _mlp(activation, opt_name)
    graphed_model, graphed = _mlp(activation, opt_name)
    xs, ys = _batches()
    captured = gg.cpu_graph(graphed, xs[0], ys[0])  # the capture is the first step, for real
    losses = [eager(xs[0], ys[0]).item()]
    replayed = [captured.first_outputs.item()]
    _same_models(eager_model, graphed_model)
    for x, y in zip(xs[1:], ys[1:], strict=True):
        losses.append(eager(x, y).item())
        out = captured(x, y)
        assert out.grad_fn is None and not out.requires_grad
        replayed.append(out.item())
        _same_models(eager_model, graphed_model)
    assert losses == replayed


def test_shared_weights_broadcasts_and_a_second_loss_replay_like_eager():
    def build():
        gg.manual_seed(1)
        w = gg.randn(6, 6, requires_grad=True)
        b = gg.zeros((1, 6), requires_grad=True)
        opt = optim.SGD([w, b], lr=0.05)

        def step(x, t):
            h = (x @ w + b).tanh()
            out = h @ w  # w used twice: its gradients are summed
            loss = F.mse_loss(out, t) + (h * h).mean() * 0.1
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss, out

        return (w, b), step

    rng = np.random.default_rng(3)
    data = [
        (gg.tensor(rng.standard_normal((4, 6), dtype=np.float32)),
         gg.tensor(rng.standard_normal((4, 6), dtype=np.float32)))
        for _ in range(4)
    ]  # fmt: skip
    (w1, b1), eager = build()
    (w2, b2), graphed = build()
    captured = gg.cpu_graph(graphed, *data[0])
    eager(*data[0])
    for x, t in data[1:]:
        want_loss, want_out = eager(x, t)
        loss, out = captured(x, t)
        assert loss.item() == want_loss.item()
        np.testing.assert_array_equal(out.numpy(), want_out.numpy())
    for p, q in ((w1, w2), (b1, b2)):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_replay_reads_parameters_replaced_after_the_capture():
    model, step = _mlp("relu", "sgd")
    xs, ys = _batches(2)
    captured = gg.cpu_graph(step, xs[0], ys[0])
    for p in model.parameters():
        p.data = np.zeros_like(p.data)  # a new array: the replay must read it, not the old one
    loss = captured(xs[1], ys[1])
    assert loss.item() == pytest.approx(np.log(5), rel=1e-6)  # all-zero logits


def test_replay_refuses_inputs_unlike_the_examples():
    _, step = _mlp("relu", "sgd")
    xs, ys = _batches(1)
    captured = gg.cpu_graph(step, xs[0], ys[0])
    with pytest.raises(ValueError, match="captured for"):
        captured(gg.zeros((3, 12)), ys[0])
    with pytest.raises(TypeError, match="expected 2 inputs"):
        captured(xs[0])


def test_capture_refuses_what_it_cannot_replay():
    model, _ = _mlp("relu", "sgd")
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = gg.ones((2, 12))

    def with_closure(x):
        opt.step(lambda: model(x).sum())

    with pytest.raises(RuntimeError, match="closure"):
        gg.cpu_graph(with_closure, x)
    with pytest.raises(TypeError, match="tensor on the CPU"):
        gg.cpu_graph(lambda x: x, np.ones(3))

    def nested(x):
        gg.cpu_graph(lambda t: t * 2, x)

    with pytest.raises(RuntimeError, match="already running"):
        gg.cpu_graph(nested, x)
