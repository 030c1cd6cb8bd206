"""Tensor construction, attributes, operators, indexing, conversion and error messages."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg


def test_python_floats_default_to_float32_and_numpy_arrays_keep_their_dtype():
    assert gg.tensor(1.5).dtype == gg.float32
    assert gg.tensor([[1.0, 2.0]]).dtype == gg.float32
    assert gg.tensor(np.zeros(2, np.float64)).dtype == gg.float64
    assert gg.tensor(np.zeros(2, np.float32)).dtype == gg.float32
    assert gg.tensor([1, 2, 3]).dtype == gg.int64  # class labels stay integer
    assert gg.tensor(np.array([1, 2], np.int32)).dtype == gg.int32
    assert gg.tensor([1, 2], dtype=gg.float64).dtype == gg.float64


def test_attributes_and_conversions():
    x = gg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    assert (x.shape, x.ndim, x.size, x.device, x.requires_grad) == ((2, 3), 2, 6, "cpu", True)
    assert x.is_leaf and x.grad is None and len(x) == 2
    assert x.numpy() is x.data and x.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert gg.tensor([[7.0]]).item() == 7.0 and float(gg.tensor(2.5)) == 2.5
    with pytest.raises(ValueError, match=r"only one-element tensors.*\(2, 3\)"):
        x.item()
    np.testing.assert_array_equal(np.asarray(x), x.numpy())


def test_repr_shows_values_dtype_device_and_the_op():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], dtype=float32, device=cpu, requires_grad=True)"
    assert repr(x * 2).endswith("dtype=float32, device=cpu, grad_fn=<mul>)")
    assert "dtype=int64" in repr(gg.tensor([1, 2]))


def test_grad_is_settable_and_checked():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    x.grad = np.array([0.5, 0.5], np.float32)
    assert isinstance(x.grad, gg.Tensor) and x.grad.shape == (2,)
    x.grad = None
    assert x.grad is None
    with pytest.raises(ValueError, match=r"gradient of shape \(3,\)"):
        x.grad = np.zeros(3)


@pytest.mark.parametrize(
    "expr, expected",
    [
        (lambda x: x + 1, [2, 3]),
        (lambda x: 1 + x, [2, 3]),
        (lambda x: x - 1, [0, 1]),
        (lambda x: 1 - x, [0, -1]),
        (lambda x: x * 2, [2, 4]),
        (lambda x: 2 * x, [2, 4]),
        (lambda x: x / 2, [0.5, 1]),
        (lambda x: 2 / x, [2, 1]),
        (lambda x: x**2, [1, 4]),
        (lambda x: 2**x, [2, 4]),
        (lambda x: x ** gg.tensor([2.0, 3.0]), [1, 8]),
        (lambda x: -x, [-1, -2]),
        (lambda x: np.array([1.0, 1.0]) + x, [2, 3]),
        (lambda x: x * np.array([3.0, 4.0]), [3, 8]),
        (lambda x: np.array([2.0, 2.0]) - x, [1, 0]),
    ],
)
def test_scalars_and_numpy_arrays_mix_with_tensors_on_either_side(expr, expected):
    x = gg.tensor([1.0, 2.0])
    out = expr(x)
    assert isinstance(out, gg.Tensor) and out.dtype == gg.float32
    np.testing.assert_allclose(out.numpy(), expected)


def test_comparisons_give_boolean_tensors_without_gradients():
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result, expected in [
        (x > 2, [0, 0, 1]),
        (x >= 2, [0, 1, 1]),
        (x < 2, [1, 0, 0]),
        (x <= 2, [1, 1, 0]),
        (x == 2, [0, 1, 0]),
        (x != 2, [1, 0, 1]),
    ]:
        assert result.dtype == gg.bool_ and not result.requires_grad
        np.testing.assert_array_equal(result.numpy(), np.array(expected, bool))


@pytest.mark.parametrize(
    "xs, ys",
    [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4))],
)
def test_matmul_follows_numpy_matmul_shapes(xs, ys):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(xs), rng.standard_normal(ys)
    np.testing.assert_allclose((gg.tensor(a) @ gg.tensor(b)).numpy(), a @ b)


def test_matmul_errors_name_the_op_and_shapes():
    with pytest.raises(ValueError, match=r"matmul: \(3, 4\) @ \(5, 2\): inner dimensions 4 and 5"):
        gg.zeros(3, 4) @ gg.zeros(5, 2)
    with pytest.raises(TypeError, match="float32.*float64.*dtypes differ"):
        gg.zeros(2, 2) @ gg.zeros(2, 2, dtype=gg.float64)


def test_elementwise_float32_with_float64_promotes_and_grads_keep_each_dtype():
    a = gg.tensor([1.0, 2.0], requires_grad=True)
    b = gg.tensor(np.array([3.0, 4.0]), requires_grad=True)
    out = a * b
    assert out.dtype == gg.float64
    out.sum().backward()
    assert a.grad.dtype == gg.float32 and b.grad.dtype == gg.float64


def test_broadcast_error_names_the_shapes():
    with pytest.raises(ValueError, match=r"add: inputs \(3,\) float32, \(4,\) float32"):
        gg.zeros(3) + gg.zeros(4)
    with pytest.raises(ValueError, match=r"reshape: inputs \(6,\) float32: .*size 6"):
        gg.zeros(6).reshape(4, 2)


def test_reshape_transpose_accept_varargs_and_tuples():
    x = gg.tensor(np.arange(12.0))
    assert x.reshape(4, 3).shape == x.reshape((4, 3)).shape == (4, 3)
    y = x.reshape(2, 3, 2)
    assert y.transpose(2, 0, 1).shape == y.transpose((2, 0, 1)).shape == (2, 2, 3)
    assert y.T.shape == (2, 3, 2)


def test_integer_array_indexing_scatter_adds_in_backward():
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[gg.tensor(np.array([0, 0, 2]))].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 1.0])
    y = gg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y[[1, 1]].sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [[0, 0], [2, 2]])


def test_cast_passes_the_gradient_back_in_the_source_dtype():
    x = gg.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x.to(gg.float32) * gg.tensor([3.0, 5.0])).sum().backward()
    assert x.grad.dtype == gg.float64
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 5.0])


def test_to_the_same_device_or_dtype_returns_the_same_tensor():
    x = gg.tensor([1.0])
    assert x.to("cpu") is x and x.to(gg.float32) is x and x.cpu() is x
    assert x.to(gg.int64).dtype == gg.int64


def test_cuda_without_a_gpu_explains_why():
    if gg.cuda_is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA is unavailable"):
        gg.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is unavailable"):
        gg.tensor([1.0]).to("cuda:0")
    assert gg.tensor([1.0], device="auto").device == "cpu"


def test_bad_devices_are_named():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        gg.tensor([1.0], device="tpu")
    with pytest.raises(ValueError, match="cuda:N"):
        gg.tensor([1.0], device="cuda:x")


def test_factories_and_seeded_randomness():
    gg.manual_seed(3)
    a = gg.randn(2, 3)
    gg.manual_seed(3)
    b = gg.randn((2, 3))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert a.dtype == gg.float32 and a.shape == (2, 3)
    assert gg.zeros(2, 2).numpy().sum() == 0 and gg.ones(3).numpy().sum() == 3
    assert gg.full((2,), 7.0).numpy().tolist() == [7.0, 7.0]
    assert gg.zeros(2, requires_grad=True).requires_grad
    assert gg.rand(100).numpy().max() < 1 and gg.randint(0, 3, 50).numpy().max() < 3


def test_free_functions_accept_scalars_and_tensors():
    x = gg.tensor([-1.0, 2.0], requires_grad=True)
    np.testing.assert_array_equal(gg.where(x > 0, x, 0.0).numpy(), [0, 2])
    np.testing.assert_array_equal(gg.maximum(x, 0.5).numpy(), [0.5, 2])
    assert gg.concatenate([x, x]).shape == (4,) and gg.stack([x, x], axis=1).shape == (2, 2)
    assert gg.exp(x).shape == (2,) and gg.sum(x).item() == 1.0
