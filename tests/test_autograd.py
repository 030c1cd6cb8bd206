"""Engine semantics: ordering, accumulation, freeing, grad mode, versions, memory."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad.engine import Node


def test_a_100000_op_chain_backpropagates_without_recursion():
    x = gg.tensor(1.0, dtype=gg.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_a_value_used_twice_accumulates_its_gradients():
    a = gg.tensor(3.0, requires_grad=True)
    b = a + a
    c = b + b  # the diamond: dc/da = 4
    c.backward()
    assert a.grad.item() == 4.0


def test_diamond_with_different_paths_sums_both_contributions():
    x = gg.tensor(2.0, dtype=gg.float64, requires_grad=True)
    y = x.exp()
    z = y * x + y.log()  # d/dx = e^x * x + e^x + 1
    z.backward()
    assert x.grad.item() == pytest.approx(np.exp(2) * 2 + np.exp(2) + 1)


@pytest.mark.parametrize(
    "xs, ys",
    [((1,), (5, 4)), ((4, 1), (1, 4)), ((), (3, 2)), ((5, 4), (4,)), ((2, 1, 3), (4, 1))],
)
def test_broadcast_gradients_sum_back_to_each_input_shape(xs, ys):
    rng = np.random.default_rng(0)
    x = gg.tensor(rng.standard_normal(xs), requires_grad=True)
    y = gg.tensor(rng.standard_normal(ys), requires_grad=True)
    (x * y).sum().backward()
    assert x.grad.shape == x.shape and y.grad.shape == y.shape
    full = np.broadcast_shapes(xs, ys)
    yb = np.broadcast_to(y.numpy(), full)
    expected_dx = yb.sum(axis=tuple(range(len(full) - len(xs)))) if len(full) > len(xs) else yb
    expected_dx = expected_dx.reshape(-1, *xs)[...].sum(axis=0) if False else expected_dx
    for axis, n in enumerate(xs):
        if n == 1:
            expected_dx = expected_dx.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(x.grad.numpy(), expected_dx, rtol=1e-5)


def test_leaf_gradients_accumulate_across_backward_calls_like_pytorch():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.grad = None
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_second_backward_without_retain_graph_raises_and_with_it_doubles():
    x = gg.tensor(2.0, requires_grad=True)
    y = x * x
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    x.grad = None
    z = x * x
    z.backward(retain_graph=True)
    z.backward()
    assert x.grad.item() == 8.0


def test_backward_on_a_non_scalar_needs_a_gradient():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="implicitly created only for scalar outputs"):
        y.backward()
    y.backward(np.array([1.0, 10.0], np.float32))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 20.0])


def test_backward_gradient_of_the_wrong_shape_is_refused():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_a_tensor_without_grad_explains():
    with pytest.raises(RuntimeError, match="does not require grad"):
        gg.tensor([1.0]).sum().backward()


def test_no_grad_records_nothing_as_context_manager_and_decorator():
    x = gg.tensor([1.0], requires_grad=True)
    with gg.no_grad():
        y = x * 2
        assert not gg.is_grad_enabled()
        with gg.enable_grad():
            z = x * 2
    assert gg.is_grad_enabled()
    assert y._node is None and not y.requires_grad
    assert z._node is not None

    @gg.no_grad()
    def f(t):
        return t * 2

    assert f(x)._node is None and gg.is_grad_enabled()


def test_unused_parameter_keeps_grad_none():
    a = gg.tensor(1.0, requires_grad=True)
    unused = gg.tensor(1.0, requires_grad=True)
    (a * 2).backward()
    assert unused.grad is None


def test_integer_tensors_refuse_requires_grad():
    with pytest.raises(RuntimeError, match="only floating point tensors can require gradients"):
        gg.tensor([1, 2, 3], requires_grad=True)


def test_backward_into_a_float64_leaf_from_a_float32_graph_keeps_the_leaf_dtype():
    x = gg.tensor([1.0, 2.0], dtype=gg.float64, requires_grad=True)
    (x.to(gg.float32) * 3).sum().backward()
    assert x.grad.dtype == gg.float64
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_changing_a_saved_value_in_place_raises_instead_of_a_wrong_gradient():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()  # saves its output
    z = y.sum()
    y += 1
    with pytest.raises(RuntimeError, match="'exp' was modified in place"):
        z.backward()


def test_in_place_on_a_view_bumps_the_base_version():
    x = gg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = x * 1
    w = y.log()  # saves y
    row = y[0]
    with gg.no_grad():
        row *= 2
    np.testing.assert_array_equal(y.numpy()[0], [2.0, 4.0])
    with pytest.raises(RuntimeError, match="'log'"):
        w.sum().backward()


def test_in_place_add_on_a_graph_tensor_records_the_op():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y += x  # y = 3x
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_in_place_change_of_a_leaf_that_requires_grad_is_refused_outside_no_grad():
    w = gg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w -= 1
    with gg.no_grad():
        w -= 1  # the optimizer's path
    np.testing.assert_array_equal(w.numpy(), [0.0, 1.0])
    assert w._version[0] == 1


def test_setitem_records_gradients_for_both_sides():
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = gg.tensor(5.0, requires_grad=True)
    y = x * 1
    y[1] = v * 2
    (y * gg.tensor([1.0, 10.0, 100.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0, 100.0])
    assert v.grad.item() == 20.0


def _training_like_step():
    """A two-layer classifier's forward and backward; returns the loss."""
    rng = np.random.default_rng(0)
    w1 = gg.tensor(rng.standard_normal((16, 8)), requires_grad=True)
    w2 = gg.tensor(rng.standard_normal((3, 16)), requires_grad=True)
    x = gg.tensor(rng.standard_normal((5, 8)))
    t = gg.tensor(np.array([0, 1, 2, 1, 0]))
    loss = F.cross_entropy(F.linear(F.relu(F.linear(x, w1)), w2), t)
    loss.backward()
    return loss


def test_graphs_are_freed_by_reference_counting_alone():
    _training_like_step()  # first calls import and load kernels, which makes garbage of its own
    gc.collect()
    gc.disable()
    try:
        loss = _training_like_step()
        probe = weakref.ref(loss._node)
        del loss
        assert probe() is None, "the graph outlived its last reference"
        found = gc.collect()  # everything unreachable that only the cyclic GC could free
    finally:
        gc.enable()
    assert found == 0, f"the step left {found} objects in reference cycles"


def test_no_live_nodes_accumulate_over_many_steps():
    for _ in range(50):
        _training_like_step()
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is Node]  # no isinstance: lazy modules


def test_detach_cuts_the_graph_and_shares_memory():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).detach()
    assert y._node is None and not y.requires_grad
    z = x.detach()
    assert z.numpy() is x.numpy()


def test_backward_on_a_leaf_seeds_its_own_gradient():
    x = gg.tensor(3.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_stored_gradients_never_alias_each_other():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = gg.tensor([1.0, 2.0], requires_grad=True)
    (x + y).sum().backward()  # add passes the same array to both inputs
    x.grad.data[0] = 100.0
    assert y.grad.numpy()[0] == 1.0


def test_detect_anomaly_names_the_op_and_user_line():
    x = gg.tensor([0.0, 1.0], requires_grad=True)
    with gg.detect_anomaly(), pytest.raises(FloatingPointError, match=r"'log'.*test_autograd"):
        x.log()  # log(0) = -inf


def test_detect_anomaly_catches_a_nan_gradient():
    x = gg.tensor([0.0], requires_grad=True)
    with gg.detect_anomaly():
        y = x.sqrt() * 0.0  # forward is finite; d sqrt at 0 is inf, times 0 -> nan
        with pytest.raises(FloatingPointError, match="backward of 'sqrt'"):
            y.sum().backward()


@pytest.mark.parametrize(
    "xs, ys", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4))]
)
@pytest.mark.parametrize("which", [0, 1])
def test_matmul_with_one_constant_side_keeps_only_what_its_gradient_needs(xs, ys, which):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(xs), rng.standard_normal(ys)
    x = gg.tensor(a, requires_grad=which == 0)
    y = gg.tensor(b, requires_grad=which == 1)
    out = x @ y
    assert out._node.saved[which] is None  # dx needs only y and dy only x
    out.sum().backward()
    both = [gg.tensor(a, requires_grad=True), gg.tensor(b, requires_grad=True)]
    (both[0] @ both[1]).sum().backward()
    got = (x if which == 0 else y).grad.numpy()
    np.testing.assert_allclose(got, both[which].grad.numpy(), rtol=1e-12)


def test_a_view_read_by_an_op_with_a_constant_can_be_written_back():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y[0] = y[0] * 5  # mul keeps nothing of y[0]: the write through y is safe
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 1.0])
