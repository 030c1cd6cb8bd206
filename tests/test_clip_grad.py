"""nn.utils.clip_grad_norm_ / clip_grad_value_: PyTorch's numbers, the multi-tensor passes
against the NumPy reference, special values, and what clipping leaves alone (autograd)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import nn

SHAPES = [(4, 3), (3,), (2, 2, 2), (1000,), ()]
NORMS = [2.0, 1.0, 3.0, math.inf, "inf"]


def _params(dtype, seed=0, scale=3.0, device="cpu"):
    rng = np.random.default_rng(seed)
    params = [gg.tensor(np.zeros(s, dtype), device=device, requires_grad=True) for s in SHAPES]
    for p in params:
        p.grad = gg.tensor((rng.standard_normal(p.shape) * scale).astype(dtype), device=device)
    return params


def _torch_params(torch, params):
    out = []
    for p in params:
        t = torch.zeros(p.shape, dtype=getattr(torch, p.dtype.name), requires_grad=True)
        t.grad = torch.tensor(p.grad.numpy().copy())
        out.append(t)
    return out


@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernels", "reference"])
@pytest.mark.parametrize("norm_type", NORMS, ids=str)
@pytest.mark.parametrize("max_norm", [1.5, 1e9], ids=["clips", "below"])
def test_clip_grad_norm_matches_pytorch_in_float64(norm_type, max_norm, use_kernels, kernels):
    torch = pytest.importorskip("torch")
    kernels(use_kernels)
    ours = _params(np.float64)
    theirs = _torch_params(torch, ours)
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, gg.Tensor) and total.shape == () and total.dtype == np.float64
    assert total.item() == pytest.approx(expected.item(), rel=1e-13)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-13, atol=1e-300)
    if max_norm > 1e6:  # below the limit: multiplied by exactly 1
        for p, t in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=str)
def test_clip_grad_norm_float32_matches_pytorch(norm_type):
    torch = pytest.importorskip("torch")
    ours = _params(np.float32)
    theirs = _torch_params(torch, ours)
    total = nn.utils.clip_grad_norm_(ours, 1.0, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type)
    assert total.dtype == np.float32
    # gpugrad sums in float64 and rounds once; torch accumulates float32 norms
    assert total.item() == pytest.approx(expected.item(), rel=2e-6)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=2e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 2.5, math.inf], ids=str)
def test_the_numba_pass_agrees_with_the_reference(dtype, norm_type, kernels):
    results = []
    for on in (True, False):
        kernels(on)
        params = _params(dtype, seed=3)
        total = nn.utils.clip_grad_norm_(params, 0.5, norm_type)
        results.append((total.item(), [p.grad.numpy().copy() for p in params]))
    (t1, g1), (t2, g2) = results
    assert t1 == pytest.approx(t2, rel=1e-12)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_the_norm_by_hand_and_its_two_halves():
    a = gg.tensor([3.0, 0.0], requires_grad=True)
    b = gg.tensor([[4.0]], requires_grad=True)
    a.grad, b.grad = gg.tensor([3.0, 0.0]), gg.tensor([[4.0]])
    assert nn.utils.get_total_norm([a.grad, b.grad]).item() == 5.0
    assert nn.utils.get_total_norm([a.grad, b.grad], 1).item() == 7.0
    assert nn.utils.get_total_norm([a.grad, b.grad], "inf").item() == 4.0
    total = nn.utils.get_total_norm([a.grad, b.grad])
    nn.utils.clip_grads_with_norm_([a, b], 1.0, total)
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), [[0.8]], rtol=1e-6)


def test_single_tensor_generator_missing_grads_and_no_grads():
    w = gg.tensor([3.0, 4.0], requires_grad=True)
    w.grad = gg.tensor([3.0, 4.0])
    assert nn.utils.clip_grad_norm_(w, 10.0).item() == 5.0  # a lone tensor, as in PyTorch
    idle = gg.tensor([1.0], requires_grad=True)
    assert nn.utils.clip_grad_norm_((p for p in [w, idle]), 10.0).item() == 5.0
    assert idle.grad is None
    none = nn.utils.clip_grad_norm_([idle], 1.0)
    assert none.item() == 0.0 and none.dtype == np.float32 and none.device == "cpu"


def test_mixed_dtypes_give_the_promoted_dtype_as_pytorch():
    torch = pytest.importorskip("torch")
    a = gg.tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    b = gg.tensor(np.array([2.0], np.float64), requires_grad=True)
    a.grad, b.grad = gg.tensor(np.array([1.0, 2.0], np.float32)), gg.tensor(np.array([2.0]))
    ta = torch.zeros(2, requires_grad=True)
    tb = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    ta.grad, tb.grad = torch.tensor([1.0, 2.0]), torch.tensor([2.0], dtype=torch.float64)
    total = nn.utils.clip_grad_norm_([a, b], 1.0)
    expected = torch.nn.utils.clip_grad_norm_([ta, tb], 1.0)
    assert total.dtype.name == str(expected.dtype).removeprefix("torch.")
    assert total.item() == pytest.approx(expected.item(), rel=1e-7)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-6)
    # torch rounds the float32 group's norm to float32 before combining; gpugrad does not
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-7)


@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernels", "reference"])
@pytest.mark.parametrize("bad", [math.nan, math.inf], ids=["nan", "inf"])
def test_non_finite_gradients_as_pytorch_or_a_named_error(bad, use_kernels, kernels):
    torch = pytest.importorskip("torch")
    kernels(use_kernels)
    ours = _params(np.float64)
    ours[2].grad.data[0, 1, 0] = bad
    theirs = _torch_params(torch, ours)
    for norm_type in (2.0, math.inf):
        before = [p.grad.numpy().copy() for p in ours]
        with pytest.raises(RuntimeError, match=r"is (nan|inf).*parameter 2 \(2, 2, 2\)"):
            nn.utils.clip_grad_norm_(ours, 1.0, norm_type, error_if_nonfinite=True)
        for p, b in zip(ours, before, strict=True):  # nothing was scaled
            np.testing.assert_array_equal(p.grad.numpy(), b)
    total = nn.utils.clip_grad_norm_(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    np.testing.assert_array_equal(total.numpy(), expected.numpy())
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())  # 0 or NaN, as torch


def test_an_infinite_norm_from_finite_gradients_names_no_single_culprit():
    a = gg.tensor(np.array([1e300, 1e300]), requires_grad=True)
    a.grad = gg.tensor(np.array([1e300, 1e300]))
    with pytest.raises(RuntimeError, match="no single gradient is at fault"):
        nn.utils.clip_grad_norm_([a], 1.0, error_if_nonfinite=True)


def test_clipping_bumps_grad_versions_only_and_autograd_still_runs():
    w = gg.tensor([1.0, 2.0], dtype=gg.float64, requires_grad=True)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)  # the graph saved w
    before = w._version[0], w.grad._version[0]
    nn.utils.clip_grad_norm_([w], 1.0)
    nn.utils.clip_grad_value_([w], 0.1)
    assert w._version[0] == before[0] and w.grad._version[0] == before[1] + 2
    loss.backward()  # the parameter is unchanged, so backward through the saved w runs
    np.testing.assert_allclose(w.grad.numpy(), [0.1 + 2.0, 0.1 + 4.0])


def test_non_contiguous_and_float16_gradients_take_the_reference_in_place():
    torch = pytest.importorskip("torch")
    base = np.arange(12.0).reshape(3, 4)
    a = gg.tensor(np.zeros((4, 3)), requires_grad=True)
    a.grad = gg.Tensor(base.T)  # a transposed view: not contiguous
    h = gg.tensor(np.zeros(3, np.float16), requires_grad=True)
    h.grad = gg.tensor(np.array([1.0, -2.0, 3.0], np.float16))
    expected = math.sqrt(float((torch.tensor(base) ** 2).sum()) + 14.0)
    before = base.T.copy()
    total = nn.utils.clip_grad_norm_([a, h], 2.0)
    assert np.shares_memory(a.grad.data, base)  # scaled where it lies
    assert total.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(a.grad.numpy(), before * (2.0 / expected), rtol=1e-6)
    h.grad = gg.tensor(np.array([1.0, -2.0, 3.0], np.float16))
    nn.utils.clip_grad_value_([h], 0.5)
    assert h.grad.tolist() == [0.5, -0.5, 0.5]


@pytest.mark.parametrize("use_kernels", [True, False], ids=["kernels", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_matches_pytorch(dtype, use_kernels, kernels):
    torch = pytest.importorskip("torch")
    kernels(use_kernels)
    ours = _params(dtype)
    ours[0].grad.data[0, :] = (np.nan, np.inf, -np.inf)
    theirs = _torch_params(torch, ours)
    assert nn.utils.clip_grad_value_(ours, 0.1) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.1)
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(p.grad.numpy(), t.grad.numpy())  # NaN stays NaN


def test_errors_name_the_argument():
    w = gg.tensor([1.0], requires_grad=True)
    w.grad = gg.tensor([1.0])
    for bad in (0, -1.0, "-inf", "two"):
        with pytest.raises(ValueError, match="norm_type must be a positive number or inf"):
            nn.utils.clip_grad_norm_([w], 1.0, norm_type=bad)
    with pytest.raises(ValueError, match="clip_value must be >= 0, got -1"):
        nn.utils.clip_grad_value_([w], -1)
    with pytest.raises(TypeError, match="item 1 is a ndarray, not a Tensor"):
        nn.utils.clip_grad_norm_([w, np.zeros(2)], 1.0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 2.5, math.inf], ids=str)
def test_gpu_clipping_equals_the_cpu_reference(dtype, norm_type, device, kernels):
    if device == "cpu":
        pytest.skip("the CPU passes are compared above")
    kernels(False)
    ref = _params(dtype, seed=5)
    ref.append(gg.tensor(np.zeros(70000, dtype), requires_grad=True))  # two 65536 chunks
    ref[-1].grad = gg.tensor(np.linspace(-2, 2, 70000).astype(dtype))
    expected = nn.utils.clip_grad_norm_(ref, 0.5, norm_type).item()
    kernels(True)
    ours = _params(dtype, seed=5, device=device)
    ours.append(gg.tensor(np.zeros(70000, dtype), device=device, requires_grad=True))
    ours[-1].grad = gg.tensor(np.linspace(-2, 2, 70000).astype(dtype), device=device)
    total = nn.utils.clip_grad_norm_(ours, 0.5, norm_type)
    assert total.device == ours[0].device
    assert total.item() == pytest.approx(expected, rel=float(10 * np.finfo(dtype).eps))
    for p, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), r.grad.numpy(), rtol=8 * np.finfo(dtype).eps)
        p.grad = gg.tensor(r.grad.numpy(), device=device)  # the same values for the clamp
    nn.utils.clip_grad_value_(ours, 1e-3)
    nn.utils.clip_grad_value_(ref, 1e-3)
    for p, r in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(p.grad.numpy(), r.grad.numpy())


@pytest.mark.gpu
@pytest.mark.parametrize("norm_type", [2.0, math.inf], ids=str)
def test_gpu_clipping_of_non_finite_gradients_equals_the_cpu(norm_type, device):
    if device == "cpu":
        pytest.skip("the CPU passes are compared above")
    results = []
    for dev in ("cpu", device):
        params = _params(np.float32, seed=6, device=dev)
        grad = params[3].grad.numpy().copy()
        grad[[5, 700]] = (np.nan, np.inf)
        params[3].grad = gg.tensor(grad, device=dev)
        with pytest.raises(RuntimeError, match=r"parameter 3 \(1000,\) holds NaN or inf"):
            nn.utils.clip_grad_norm_(params, 1.0, norm_type, error_if_nonfinite=True)
        total = nn.utils.clip_grad_norm_(params, 1.0, norm_type)
        results.append((total.numpy(), [p.grad.numpy().copy() for p in params]))
    (t_cpu, g_cpu), (t_gpu, g_gpu) = results
    assert np.isnan(t_cpu) and np.isnan(t_gpu)
    for a, b in zip(g_cpu, g_gpu, strict=True):
        np.testing.assert_array_equal(a, b)  # NaN everywhere, as torch
