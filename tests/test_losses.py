"""Losses: PyTorch's semantics, fused vs composed, Numba vs NumPy reference, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, tol

import gpugrad as gg
import gpugrad.functional as F

REDUCTIONS = ["mean", "sum", "none"]


def _grads(fn, *arrays, diff=None):
    ts = [
        gg.tensor(a, requires_grad=a.dtype.kind == "f" and (diff is None or i in diff))
        for i, a in enumerate(arrays)
    ]
    out = fn(*ts)
    out.backward(np.ones(out.shape, out.dtype) if out.ndim else None)
    return out.numpy(), [t.grad.numpy() if t.requires_grad else None for t in ts]


def _logits_and_labels(rng, n=6, c=5, dtype=np.float64):
    return rng.standard_normal((n, c)).astype(dtype) * 3, rng.integers(0, c, n)


# ----------------------------------------------------------------------------- vs PyTorch


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_match_pytorch_values_and_gradients(reduction):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    rng = np.random.default_rng(0)
    x, labels = _logits_and_labels(rng)
    probs = rng.uniform(0.05, 0.95, x.shape)
    cases = [
        ("cross_entropy", (x, labels), {}),
        ("cross_entropy", (x, np.where(labels == 1, -100, labels)), {"ignore_index": -100}),
        ("binary_cross_entropy_with_logits", (x, probs), {}),
        ("binary_cross_entropy", (probs, rng.uniform(0, 1, x.shape)), {}),
        ("mse_loss", (x, probs), {}),
        ("multi_margin_loss", (x, labels), {}),
        ("multi_margin_loss", (x, labels), {"p": 2, "margin": 0.5}),
    ]
    for name, arrays, kw in cases:
        ours, our_grads = _grads(
            lambda *t, name=name, kw=kw: getattr(F, name)(*t, reduction=reduction, **kw), *arrays
        )
        tt = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
        ref = getattr(tF, name)(*tt, reduction=reduction, **kw)
        ref.backward(torch.ones_like(ref))
        np.testing.assert_allclose(ours, ref.detach().numpy(), rtol=1e-10, err_msg=name)
        for g, t in zip(our_grads, tt, strict=True):
            if t.requires_grad:
                np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


# ----------------------------------------------------------------------------- fused vs composed


def test_cross_entropy_fused_matches_composed_log_softmax():
    rng = np.random.default_rng(1)
    x, t = _logits_and_labels(rng, 8, 7)
    fused, (dfused, _) = _grads(F.cross_entropy, x, t)

    def composed(logits, targets):
        return -F.log_softmax(logits, axis=1)[np.arange(8), targets.numpy()].mean()

    ref, (dref, _) = _grads(composed, x, t)
    assert_close(fused, ref, **tol("float64"), what="loss")
    assert_close(dfused, dref, **tol("float64", "grad"), what="dlogits")


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_batch():
    rng = np.random.default_rng(2)
    x, t = _logits_and_labels(rng, 4, 3)
    _, (dx, _) = _grads(F.cross_entropy, x, t)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(4), t] -= 1
    assert_close(dx, p / 4, **tol("float64", "grad"), what="(p - onehot)/B")


def test_bce_with_logits_fused_matches_composed_sigmoid_and_logs():
    rng = np.random.default_rng(3)
    s, t = rng.standard_normal((5, 4)), rng.uniform(0, 1, (5, 4))
    fused, grads_fused = _grads(F.binary_cross_entropy_with_logits, s, t)

    def composed(s, t):
        y = s.sigmoid()
        return -(t * y.log() + (1 - t) * (1 - y).log()).mean()

    ref, grads_ref = _grads(composed, s, t)
    assert_close(fused, ref, **tol("float64"), what="loss")
    for a, b in zip(grads_fused, grads_ref, strict=True):
        assert_close(a, b, rtol=1e-8, atol=1e-12, what="grad")


def test_mse_and_multi_margin_fused_match_composed():
    rng = np.random.default_rng(4)
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    fused, g1 = _grads(F.mse_loss, y, t)
    ref, g2 = _grads(lambda a, b: ((a - b) ** 2).mean(), y, t)
    assert_close(fused, ref, **tol("float64"), what="mse")
    for a, b in zip(g1, g2, strict=True):
        assert_close(a, b, **tol("float64", "grad"), what="mse grad")

    x, labels = _logits_and_labels(rng, 5, 4)

    def composed_margin(x, labels):
        n, c = x.shape
        picked = x[np.arange(n), labels.numpy()].reshape(n, 1)
        gaps = gg.maximum(1 - picked + x, 0.0)
        mask = np.ones((n, c))
        mask[np.arange(n), labels.numpy()] = 0
        return ((gaps * mask).sum(axis=1) / c).mean()

    fused, (dx1, _) = _grads(F.multi_margin_loss, x, labels)
    ref, (dx2, _) = _grads(composed_margin, x, labels)
    assert_close(fused, ref, **tol("float64"), what="margin")
    assert_close(dx1, dx2, **tol("float64", "grad"), what="margin grad")


# ----------------------------------------------------------------------------- Numba vs NumPy


KERNEL_SHAPES = [(1, 1), (1, 10), (7, 3), (64, 10), (33, 1001), (0, 5)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", KERNEL_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_numba_fast_paths_match_the_numpy_reference(shape, dtype, reduction):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    if shape[0] > 2:
        labels[1] = -100  # an ignored row
    t = rng.uniform(0, 1, shape).astype(dtype)
    cases = [
        (F.cross_entropy, (x, labels)),
        (F.binary_cross_entropy_with_logits, (x, t)),
        (F.mse_loss, (x, t)),
    ]
    for fn, arrays in cases:
        results = {}
        for kernels in (True, False):
            gg.config.kernels = kernels
            results[kernels] = _grads(lambda *ts, fn=fn: fn(*ts, reduction=reduction), *arrays)
        (fast, fast_grads), (ref, ref_grads) = results[True], results[False]
        name = fn.__name__
        assert fast.dtype == ref.dtype, name
        assert_close(fast, ref, **tol(dtype), what=f"{name} loss")
        for a, b in zip(fast_grads, ref_grads, strict=True):
            if b is not None:
                assert_close(a, b, **tol(dtype, "grad"), what=f"{name} grad")


def test_numba_fast_path_handles_non_contiguous_logits():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((10, 8))[:, ::2]  # strided view
    labels = rng.integers(0, 4, 10)
    fast = F.cross_entropy(gg.tensor(x), gg.tensor(labels)).item()
    gg.config.kernels = False
    ref = F.cross_entropy(gg.tensor(np.ascontiguousarray(x)), gg.tensor(labels)).item()
    assert fast == pytest.approx(ref, rel=1e-12)


# ----------------------------------------------------------------------------- stability


@pytest.mark.parametrize("magnitude", [88.0, 1000.0, 1e4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_give_finite_losses_and_gradients(magnitude, dtype):
    x = np.array([[magnitude, -magnitude, 0.0], [-magnitude, magnitude, magnitude]], dtype)
    labels = np.array([1, 0])
    for fn, arrays in [
        (F.cross_entropy, (x, labels)),
        (F.binary_cross_entropy_with_logits, (x, np.full(x.shape, 0.5, dtype))),
        (lambda z: F.softmax(z).sum(), (x,)),
        (lambda z: F.log_softmax(z)[:, 0].sum(), (x,)),
        (lambda z: z.sigmoid().sum(), (x,)),
        (lambda z: z.tanh().sum(), (x,)),
    ]:
        for kernels in (True, False):
            gg.config.kernels = kernels
            value, grads = _grads(fn, *arrays)
            assert np.isfinite(value).all(), f"{fn} at {magnitude}"
            assert np.isfinite(grads[0]).all(), f"{fn} grad at {magnitude}"
    # log-softmax of the largest logit is exactly 0, of a far smaller one exactly its gap
    ls = F.log_softmax(gg.tensor(np.array([1e4, 0.0], dtype))).numpy()
    assert ls[0] == 0 and ls[1] == -1e4


def test_bce_with_logits_gradient_is_exactly_sigmoid_minus_target():
    s = np.array([-3.0, -0.5, 0.0, 0.7, 4.0, 1000.0, -1000.0])
    t = np.array([0.0, 1.0, 0.5, 1.0, 0.0, 1.0, 0.0])
    for kernels in (True, False):
        gg.config.kernels = kernels
        _, (ds, _) = _grads(
            lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction="sum"), s, t
        )
        np.testing.assert_array_equal(ds, F.sigmoid(gg.tensor(s)).numpy() - t)


# ----------------------------------------------------------------------------- semantics


def test_cross_entropy_mean_excludes_ignored_rows():
    x = np.array([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    full = F.cross_entropy(gg.tensor(x[:2]), gg.tensor(np.array([0, 1]))).item()
    with_ignored = F.cross_entropy(gg.tensor(x), gg.tensor(np.array([0, 1, -100]))).item()
    assert with_ignored == pytest.approx(full)
    _, (dx, _) = _grads(F.cross_entropy, x, np.array([0, 1, -100]))
    assert (dx[2] == 0).all()


def test_cross_entropy_with_every_row_ignored_is_nan_with_zero_gradient():
    x = np.array([[1.0, 2.0]])
    loss, (dx, _) = _grads(F.cross_entropy, x, np.array([-100]))
    assert np.isnan(loss) and (dx == 0).all()


def test_cross_entropy_accepts_a_single_sample():
    x = gg.tensor([1.0, 2.0, 0.5], requires_grad=True)
    loss = F.cross_entropy(x, gg.tensor(1))
    loss.backward()
    assert loss.shape == () and x.grad.shape == (3,)


def test_the_seed_l2_loss_is_the_sum_of_squares_with_gradient_two_residuals():
    y = gg.tensor([0.5, 2.0, -1.0], dtype=gg.float64, requires_grad=True)
    t = gg.tensor([1.0, 1.0, 1.0], dtype=gg.float64)
    loss = F.mse_loss(y, t, reduction="sum")
    loss.backward()
    assert loss.item() == pytest.approx(0.25 + 1 + 4)
    np.testing.assert_allclose(y.grad.numpy(), 2 * (y.numpy() - t.numpy()))


@pytest.mark.parametrize("bad", [-1, 3, 7])
def test_out_of_range_class_targets_name_the_bad_value(bad):
    x = gg.tensor(np.zeros((2, 3)))
    for fn in (F.cross_entropy, F.multi_margin_loss):
        with pytest.raises(IndexError, match=f"target {bad} is out of range for 3 classes"):
            fn(x, gg.tensor(np.array([0, bad])))


def test_loss_input_errors_explain_the_fix():
    x = gg.tensor(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="integer class indices"):
        F.cross_entropy(x, gg.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"need targets of shape \(2,\)"):
        F.cross_entropy(x, gg.tensor(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"input \(2, 3\) and target \(3,\)"):
        F.mse_loss(x, gg.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        F.binary_cross_entropy(gg.tensor([1.5]), gg.tensor([1.0]))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        F.multi_margin_loss(x, gg.tensor(np.array([0, 1])), p=3)


def test_float64_targets_adopt_the_float32_input_dtype():
    y = gg.tensor([1.0, 2.0])
    t = gg.tensor(np.array([1.0, 1.0]))
    assert F.mse_loss(y, t).dtype == gg.float32
