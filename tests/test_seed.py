"""The lecture notes' worked examples, each against its hand-derived answer."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F


def test_f_equals_x_plus_y_times_z_at_1_minus3_4():
    x, y, z = (gg.tensor(v, requires_grad=True) for v in (1.0, -3.0, 4.0))
    d = x + y  # dd/dx = dd/dy = 1
    f = d * z  # df/dd = z, df/dz = d
    f.backward()
    assert f.item() == -8.0
    assert (x.grad.item(), y.grad.item(), z.grad.item()) == (4.0, 4.0, -2.0)


ACTS = {
    "relu": (lambda a: np.maximum(a, 0), lambda a, h: (a > 0).astype(float)),
    "tanh": (np.tanh, lambda a, h: 1 - h**2),
    "sigmoid": (lambda a: 1 / (1 + np.exp(-a)), lambda a, h: h * (1 - h)),
}

# The lecture's nested networks: f = W2 max(0, W1 x), ..., W5 s(W4 tanh(W3 max(0, W2 max(0, W1 x))))
NETWORKS = [
    ["relu"],
    ["relu", "relu"],
    ["relu", "relu", "tanh"],
    ["relu", "relu", "tanh", "sigmoid"],
]


@pytest.mark.parametrize("acts", NETWORKS, ids=lambda a: f"{len(a) + 1}-layers")
def test_nested_networks_match_hand_derived_backprop(acts):
    rng = np.random.default_rng(len(acts))
    sizes = [4] + [5] * len(acts) + [3]
    ws = [rng.standard_normal((o, i)) * 0.7 for i, o in zip(sizes[:-1], sizes[1:], strict=True)]
    x = rng.standard_normal(4)
    t = rng.standard_normal(3)

    # gpugrad: L = sum_i (y_i - t_i)^2
    params = [gg.tensor(w, requires_grad=True) for w in ws]
    h = gg.tensor(x)
    for w, act in zip(params, acts, strict=False):
        h = getattr(F, act)(w @ h)
    y = params[-1] @ h
    loss = F.mse_loss(y, gg.tensor(t), reduction="sum")
    loss.backward()

    # by hand: forward keeping pre-activations, then the chain rule layer by layer
    hs, pre = [x], []
    for w, act in zip(ws, acts, strict=False):
        pre.append(w @ hs[-1])
        hs.append(ACTS[act][0](pre[-1]))
    y_ref = ws[-1] @ hs[-1]
    delta = 2 * (y_ref - t)  # dL/dy
    expected = [None] * len(ws)
    expected[-1] = np.outer(delta, hs[-1])
    back = ws[-1].T @ delta
    for k in reversed(range(len(acts))):
        local = ACTS[acts[k]][1](pre[k], hs[k + 1]) * back  # through the activation
        expected[k] = np.outer(local, hs[k])
        back = ws[k].T @ local
    assert loss.item() == pytest.approx(((y_ref - t) ** 2).sum())
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), e, rtol=1e-10, atol=1e-12)


def test_sigmoid_bce_gradient_of_last_layer_weights_is_y_minus_t_times_h():
    # E = -sum_i t_i log y_i + (1 - t_i) log(1 - y_i), y = sigmoid(s), s_i = sum_j h_j w_ji
    rng = np.random.default_rng(0)
    h = rng.uniform(0, 1, 4)
    w = gg.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    t = np.array([1.0, 0.0, 1.0])
    s = gg.tensor(h) @ w
    E = F.binary_cross_entropy_with_logits(s, gg.tensor(t), reduction="sum")
    E.backward()
    y = 1 / (1 + np.exp(-(h @ w.numpy())))
    np.testing.assert_allclose(w.grad.numpy(), np.outer(h, y - t), rtol=1e-12)


def test_first_layer_gradient_follows_the_lecture_formula():
    # dE/dw1_kj = sum_i (y_i - t_i) w_ji h_j (1 - h_j) x_k with sigmoid hidden units
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3)
    w1 = gg.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    w2 = rng.standard_normal((4, 2))
    t = np.array([0.0, 1.0])
    h = (gg.tensor(x) @ w1).sigmoid()
    E = F.binary_cross_entropy_with_logits(h @ gg.tensor(w2), gg.tensor(t), reduction="sum")
    E.backward()
    hv = 1 / (1 + np.exp(-(x @ w1.numpy())))
    y = 1 / (1 + np.exp(-(hv @ w2)))
    expected = np.outer(x, (w2 @ (y - t)) * hv * (1 - hv))
    np.testing.assert_allclose(w1.grad.numpy(), expected, rtol=1e-12)


def test_gradient_descent_steps_against_the_gradient_and_lowers_the_loss():
    # x' = x - eps * grad f(x) on f(x) = |x - c|^2
    c = np.array([1.0, -2.0])
    x = gg.tensor([5.0, 5.0], dtype=gg.float64, requires_grad=True)
    losses = []
    for _ in range(20):
        loss = ((x - gg.tensor(c)) ** 2).sum()
        losses.append(loss.item())
        x.grad = None
        loss.backward()
        with gg.no_grad():
            x -= 0.1 * x.grad
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))
    np.testing.assert_allclose(x.numpy(), c, atol=1e-1)
