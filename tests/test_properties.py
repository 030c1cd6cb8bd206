"""Property tests (hypothesis): broadcasting and reductions against NumPy, any shapes."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gpugrad as gg

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def broadcastable_pair(draw):
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)
    )
    elements = st.floats(-10, 10, allow_nan=False, width=64)
    a = draw(hnp.arrays(np.float64, shapes.input_shapes[0], elements=elements))
    b = draw(hnp.arrays(np.float64, shapes.input_shapes[1], elements=elements))
    return a, b


@SETTINGS
@given(broadcastable_pair(), st.sampled_from(["add", "sub", "mul"]))
def test_broadcast_binary_gradients_are_sums_over_broadcast_dims(pair, name):
    a, b = pair
    x, y = gg.tensor(a, requires_grad=True), gg.tensor(b, requires_grad=True)
    out = {"add": x + y, "sub": x - y, "mul": x * y}[name]
    g = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(g)
    full = out.shape
    da = {"add": g, "sub": g, "mul": g * np.broadcast_to(b, full)}[name]
    db = {"add": g, "sub": -g, "mul": g * np.broadcast_to(a, full)}[name]

    def reduce_to(grad, shape):
        grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
        for i, n in enumerate(shape):
            if n == 1:
                grad = grad.sum(axis=i, keepdims=True)
        return grad

    assert x.grad.shape == a.shape and y.grad.shape == b.shape
    np.testing.assert_allclose(x.grad.numpy(), reduce_to(da, a.shape), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y.grad.numpy(), reduce_to(db, b.shape), rtol=1e-10, atol=1e-10)


@st.composite
def array_and_axes(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    a = draw(hnp.arrays(np.float64, shape, elements=st.floats(-5, 5, width=64), unique=True))
    axes = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True
            ).map(tuple),
        )
    )
    return a, axes, draw(st.booleans())


@SETTINGS
@given(array_and_axes(), st.sampled_from(["sum", "mean", "max", "min", "var"]))
def test_reductions_match_numpy_and_route_gradients(case, name):
    a, axes, keepdims = case
    x = gg.tensor(a, requires_grad=True)
    out = getattr(x, name)(axis=axes, keepdims=keepdims)
    expected = getattr(np, name)(a, axis=axes, keepdims=keepdims)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    n = a.size if axes is None else int(np.prod([a.shape[i] for i in axes]))
    if name == "sum":
        np.testing.assert_array_equal(x.grad.numpy(), np.ones_like(a))
    elif name == "mean":
        np.testing.assert_allclose(x.grad.numpy(), np.full_like(a, 1 / n))
    elif name in ("max", "min"):  # unique values: exactly one winner per reduced slice
        hits = a == getattr(np, name)(a, axis=axes, keepdims=True)
        np.testing.assert_array_equal(x.grad.numpy(), hits.astype(float))
    else:
        centered = a - a.mean(axis=axes, keepdims=True)
        np.testing.assert_allclose(x.grad.numpy(), 2 * centered / n, rtol=1e-10, atol=1e-12)
