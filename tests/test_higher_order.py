"""Gradients of gradients: create_graph, gg.grad, the functional helpers, and the PyTorch oracle.

The op-info harness checks second derivatives of every op (test_ops.py); here: the semantics
of the API (PyTorch's), the engine's promises inside a second-order graph (anomaly mode,
version counters, no_grad), and agreement with torch.autograd on whole models in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import dispatch, nn
from gpugrad.autograd import functional as AF


def _x(values, grad=True):
    return gg.tensor(np.asarray(values, np.float64), requires_grad=grad)


def test_derivatives_of_x_cubed_to_the_fourth_order():
    x = _x(3.0)
    (d1,) = gg.grad(x**3, x, create_graph=True)
    (d2,) = gg.grad(d1, x, create_graph=True)
    (d3,) = gg.grad(d2, x, create_graph=True)
    (d4,) = gg.grad(d3, x, allow_unused=True)
    assert (d1.item(), d2.item(), d3.item()) == (27.0, 18.0, 6.0)
    assert d4 is None or d4.item() == 0.0


def test_grad_returns_gradients_without_touching_dot_grad():
    x, w = _x([1.0, 2.0]), _x([3.0, -1.0])
    y = (x * w).sum()
    gx, gw = gg.grad(y, [x, w])
    assert gx.tolist() == [3.0, -1.0] and gw.tolist() == [1.0, 2.0]
    assert x.grad is None and w.grad is None
    assert not gx.requires_grad  # no graph without create_graph


def test_grad_of_an_intermediate_tensor_is_the_gradient_with_respect_to_its_value():
    x = _x([1.0, -2.0])
    h = x * x
    y = (h * 3).sum() + h.sum()
    (gh,) = gg.grad(y, h)
    assert gh.tolist() == [4.0, 4.0]


def test_unused_inputs_raise_naming_them_unless_allowed():
    x, z = _x([1.0]), _x([2.0])
    with pytest.raises(RuntimeError, match=r"input 1 \(1,\) is not used.*allow_unused=True"):
        gg.grad((x * 2).sum(), [x, z])
    gx, gz = gg.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gx.tolist() == [2.0] and gz is None


def test_retain_graph_defaults_to_create_graph():
    x = _x(2.0)
    y = x * x
    gg.grad(y, x)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        gg.grad(y, x)
    y = x * x
    gg.grad(y, x, create_graph=True)
    assert gg.grad(y, x)[0].item() == 4.0  # retained


def test_grad_outputs_and_several_outputs():
    x = _x([1.0, 2.0])
    a, b = x * 2, x * x
    (g,) = gg.grad([a, b], x, grad_outputs=[np.ones(2), np.array([1.0, 10.0])])
    assert g.tolist() == [4.0, 42.0]
    with pytest.raises(ValueError, match="2 output.*1 grad_outputs"):
        gg.grad([a, b], x, grad_outputs=[np.ones(2)], retain_graph=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        gg.grad(a, x)


def test_inputs_that_do_not_require_grad_are_refused():
    x, c = _x(1.0), _x(2.0, grad=False)
    with pytest.raises(RuntimeError, match="input 1 .* does not require grad"):
        gg.grad(x * c, [x, c])


def test_backward_with_create_graph_leaves_differentiable_grads():
    x = _x([1.0, 2.0])
    (x**3).sum().backward(create_graph=True)
    assert x.grad.requires_grad and x.grad.tolist() == [3.0, 12.0]
    g = x.grad
    x.grad = None
    g.sum().backward()
    assert x.grad.tolist() == [6.0, 12.0]  # d/dx of 3 x^2


def test_backward_inputs_accumulates_only_into_those_tensors():
    x, w = _x([1.0, 2.0]), _x([3.0, 4.0])
    (x * w).sum().backward(inputs=[w])
    assert w.grad.tolist() == [1.0, 2.0] and x.grad is None


def test_anomaly_mode_and_version_counters_hold_in_the_second_order_graph():
    x = _x([0.0, 1.0])
    (g,) = gg.grad((x * x).sum(), x, create_graph=True)  # 2x
    with gg.detect_anomaly(), pytest.raises(FloatingPointError, match="'log'"):
        g.log()  # log(0) = -inf in a value of the second-order graph
    x2 = _x([1.0, 2.0])
    (g2,) = gg.grad((x2 * x2 * x2).sum(), x2, create_graph=True)
    with gg.no_grad():
        x2 += 1  # the second-order graph saved x2 itself (mul's backward multiplies by it)
    with pytest.raises(RuntimeError, match="modified in place"):
        g2.sum().backward()


def test_no_grad_stops_recording_after_a_create_graph_gradient():
    x = _x([1.0, 2.0])
    (g,) = gg.grad((x**3).sum(), x, create_graph=True)
    with gg.no_grad():
        h = g * 2
    assert g.requires_grad and not h.requires_grad


def test_an_op_without_double_backward_raises_naming_it():
    @dispatch.op("_scaled_copy_for_test", saves=("factor_array",))
    def scaled(xp, x):
        return x * 2, {"factor_array": xp.full(x.shape, 2.0)}

    @scaled.backward
    def scaled_backward(xp, dout, factor_array):
        return (dout * factor_array,)

    try:
        x = _x([1.0, 2.0])
        y = scaled(x).sum()
        assert gg.grad(y, x, retain_graph=True)[0].tolist() == [2.0, 2.0]
        with pytest.raises(NotImplementedError, match="'_scaled_copy_for_test' has no double"):
            gg.grad(y, x, create_graph=True)
    finally:
        del dispatch.OPS["_scaled_copy_for_test"]


def test_functional_helpers_on_a_small_function():
    def f(x):
        return (x**3).sum() + (x[0] * x[1])

    x = _x([1.0, 2.0], grad=False)
    h = AF.hessian(f, x)
    assert h.tolist() == [[6.0, 1.0], [1.0, 12.0]]
    _, hv = AF.hvp(f, x, _x([1.0, 0.0], grad=False))
    assert hv.tolist() == [6.0, 1.0]
    j = AF.jacobian(lambda a: a * a, x)
    assert j.tolist() == [[2.0, 0.0], [0.0, 4.0]]
    _, jv = AF.jvp(lambda a: a * a, x, _x([1.0, 1.0], grad=False))
    assert jv.tolist() == [2.0, 4.0]
    _, vj = AF.vjp(lambda a: a * a, x, np.array([1.0, 1.0]))
    assert vj.tolist() == [2.0, 4.0]
    assert not h.requires_grad and x.grad is None


# ----------------------------------------------------------------------------- PyTorch oracle
def _torch():
    return pytest.importorskip("torch")


def test_third_derivative_of_tanh_matches_pytorch():
    t = _torch()
    values = np.linspace(-2.0, 2.0, 7)
    x = _x(values)
    tx = t.tensor(values, requires_grad=True)
    g, tg = x.tanh(), tx.tanh()
    for _ in range(3):
        (g,) = gg.grad(g.sum(), x, create_graph=True)
        (tg,) = t.autograd.grad(tg.sum(), tx, create_graph=True)
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-8, atol=1e-12)
    th = np.tanh(values)
    exact = -2 * (1 - th**2) ** 2 + 4 * th**2 * (1 - th**2)
    np.testing.assert_allclose(g.numpy(), exact, rtol=1e-10, atol=1e-12)


def _twin_mlps(sizes, activation, seed=0):
    """A gpugrad nn.MLP and a torch nn.Sequential with the same float64 weights."""
    t = _torch()
    gg.manual_seed(seed)
    ours = nn.MLP(sizes, activation=activation, dtype=gg.float64)
    act = {"tanh": t.nn.Tanh, "sigmoid": t.nn.Sigmoid, "relu": t.nn.ReLU}[activation]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(t.nn.Linear(a, b, dtype=t.float64))
        if i < len(sizes) - 2:
            layers.append(act())
    theirs = t.nn.Sequential(*layers)
    linears = [m for m in theirs if isinstance(m, t.nn.Linear)]
    ours_linears = [m for m in ours.modules() if isinstance(m, nn.Linear)]
    with t.no_grad():
        for tl, gl in zip(linears, ours_linears, strict=True):
            tl.weight.copy_(t.from_numpy(gl.weight.numpy()))
            tl.bias.copy_(t.from_numpy(gl.bias.numpy()))
    return ours, theirs


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_second_derivatives_of_an_mlp_output_wrt_its_input_match_pytorch(activation):
    t = _torch()
    ours, theirs = _twin_mlps([3, 16, 16, 1], activation)
    data = np.random.default_rng(1).standard_normal((5, 3))
    x, tx = _x(data), t.tensor(data, requires_grad=True)
    (g,) = gg.grad(ours(x).sum(), x, create_graph=True)
    (tg,) = t.autograd.grad(theirs(tx).sum(), tx, create_graph=True)
    np.testing.assert_allclose(g.numpy(), tg.detach().numpy(), rtol=1e-8, atol=1e-12)
    for k in range(3):  # d^2 u / d x_k^2 summed over samples, one column at a time
        (h,) = gg.grad(g[:, k].sum(), x, retain_graph=True)
        (th,) = t.autograd.grad(tg[:, k].sum(), tx, retain_graph=True)
        np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce_logits"])
def test_hessian_vector_product_of_a_loss_wrt_the_weights_matches_pytorch(loss):
    t = _torch()
    ours, theirs = _twin_mlps([4, 8, 3], "tanh", seed=2)
    rng = np.random.default_rng(3)
    data = rng.standard_normal((6, 4))
    labels = rng.integers(0, 3, 6)
    soft = rng.uniform(0, 1, (6, 3))
    params = list(ours.parameters())
    tparams = list(theirs.parameters())
    vs = [rng.standard_normal(p.shape) for p in params]

    def ours_loss():
        out = ours(_x(data, grad=False))
        if loss == "cross_entropy":
            return F.cross_entropy(out, gg.tensor(labels))
        if loss == "mse":
            return F.mse_loss(out, _x(soft, grad=False))
        return F.binary_cross_entropy_with_logits(out, _x(soft, grad=False))

    def theirs_loss():
        out = theirs(t.tensor(data))
        tf = t.nn.functional
        if loss == "cross_entropy":
            return tf.cross_entropy(out, t.tensor(labels))
        if loss == "mse":
            return tf.mse_loss(out, t.tensor(soft))
        return tf.binary_cross_entropy_with_logits(out, t.tensor(soft))

    grads = gg.grad(ours_loss(), params, create_graph=True)
    dot = sum(((g * _x(v, grad=False)).sum() for g, v in zip(grads, vs, strict=True)), _x(0.0))
    hv = gg.grad(dot, params)
    tgrads = t.autograd.grad(theirs_loss(), tparams, create_graph=True)
    tdot = sum((g * t.tensor(v)).sum() for g, v in zip(tgrads, vs, strict=True))
    thv = t.autograd.grad(tdot, tparams)
    for a, b in zip(hv, thv, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-8, atol=1e-12)


def test_functional_jacobian_and_hessian_match_pytorch():
    t = _torch()
    data = np.random.default_rng(4).standard_normal(4)

    def f(a):
        return (a.tanh() * a).sum() + (a * a * a).sum()

    def g(a):
        return a.tanh() * a[0]

    tf = t.autograd.functional
    h = AF.hessian(f, _x(data, grad=False))
    th = tf.hessian(f, t.tensor(data))
    np.testing.assert_allclose(h.numpy(), th.numpy(), rtol=1e-8, atol=1e-12)
    j = AF.jacobian(g, _x(data, grad=False))
    tj = tf.jacobian(g, t.tensor(data))
    np.testing.assert_allclose(j.numpy(), tj.numpy(), rtol=1e-8, atol=1e-12)
    v = np.random.default_rng(5).standard_normal(4)
    _, hv = AF.hvp(f, _x(data, grad=False), _x(v, grad=False))
    _, thv = tf.hvp(f, t.tensor(data), t.tensor(v))
    np.testing.assert_allclose(hv.numpy(), thv.numpy(), rtol=1e-8, atol=1e-12)


def test_the_lecture_example_has_zero_second_derivatives_along_each_input():
    # f = (x + y) z: d2f/dx2 = d2f/dy2 = d2f/dz2 = 0, d2f/dx dz = 1
    x, y, z = _x(1.0), _x(-3.0), _x(4.0)
    f = (x + y) * z
    gx, gy, gz = gg.grad(f, [x, y, z], create_graph=True)
    assert (gx.item(), gy.item(), gz.item()) == (4.0, 4.0, -2.0)
    (dxz,) = gg.grad(gx, z, retain_graph=True)
    assert dxz.item() == 1.0
    assert gg.grad(gx, x, allow_unused=True)[0] is None
    assert math.isclose(gg.grad(gz, x)[0].item(), 1.0)
