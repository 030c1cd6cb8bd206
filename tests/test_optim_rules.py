"""One update rule per optimizer, the same result on every path.

``gpugrad.optim_rules`` holds SGD, Adam/AdamW, RMSprop and Adagrad once; the reference step
runs it on float64 arrays, the Numba kernels inline it per element (gradients packed in one
buffer, or listed for large parameters), the CUDA kernel follows it. Here every path takes two
steps from parameters at +-inf, NaN, 0, huge and tiny magnitudes, with special gradients too,
and must agree with the reference bit for bit on the CPU (both compute in float64 and round
once) and within a float32 ulp or two on the GPU (where multiply-adds may fuse).
"""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import optim
from gpugrad.optim import optimizer as optimizer_module

SPECIAL = np.array(
    [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30, 3e38, 1e-38, 1.5, -2.0, 7.0], np.float64
)
GRADS = np.array(
    [0.5, -0.5, 0.5, np.inf, np.nan, 1e30, -1e-30, 0.0, 2.0, -np.inf, 1e-3, 0.25], np.float64
)

CONFIGS = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True)),
    (optim.Adam, dict(lr=1e-2)),
    (optim.Adam, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, dict(lr=1e-2)),
    (optim.AdamW, dict(lr=1e-2, weight_decay=0.0, maximize=True)),
    (optim.AdamW, dict(lr=1e-2, amsgrad=True)),
    (optim.RMSprop, dict(lr=1e-2)),
    (optim.RMSprop, dict(lr=1e-2, weight_decay=0.01, momentum=0.9, centered=True)),
    (optim.RMSprop, dict(lr=1e-2, alpha=0.4, centered=True, maximize=True)),
    (optim.Adagrad, dict(lr=0.1)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.1, weight_decay=0.01, initial_accumulator_value=0.1)),
    (optim.Adagrad, dict(lr=0.1, maximize=True, eps=0.0)),
]


def _ids(case):
    cls, kw = case
    return f"{cls.__name__}-" + "-".join(f"{k}={v}" for k, v in kw.items())


def _steps(cls, kw, dtype, device, steps=2):
    """Parameters after ``steps`` steps (a second step exercises the momentum/moment state)."""
    p = gg.tensor(SPECIAL.astype(dtype), device=device, requires_grad=True)
    q = gg.tensor(np.linspace(-1, 1, 5000).astype(dtype), device=device, requires_grad=True)
    opt = cls([p, q], **kw)
    for k in range(steps):
        p.grad = gg.tensor((GRADS * (k + 1)).astype(dtype), device=device)
        q.grad = gg.tensor(np.full(5000, 0.5 - k, dtype), device=device)
        opt.step()
    return p.numpy().copy(), q.numpy().copy()


def _same(a, b, what):
    np.testing.assert_array_equal(a, b, err_msg=what)  # NaN equals NaN here


@pytest.mark.parametrize("case", CONFIGS, ids=[_ids(c) for c in CONFIGS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_paths_equal_the_reference_bit_for_bit(case, dtype, monkeypatch):
    cls, kw = case
    gg.config.kernels = False
    reference = _steps(cls, kw, dtype, "cpu")
    gg.config.kernels = True
    packed = _steps(cls, kw, dtype, "cpu")
    monkeypatch.setattr(optimizer_module, "_LIST_GRADS_ABOVE", 0)  # gradients as a list
    listed = _steps(cls, kw, dtype, "cpu")
    for name, got in (("packed", packed), ("listed", listed)):
        for ref, out in zip(reference, got, strict=True):
            _same(out, ref, f"{cls.__name__} {kw} {np.dtype(dtype).name}: Numba {name}")


@pytest.mark.gpu
@pytest.mark.parametrize("case", CONFIGS, ids=[_ids(c) for c in CONFIGS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_kernel_equals_the_reference(case, dtype, device):
    if device == "cpu":
        pytest.skip("the CPU paths are compared above")
    cls, kw = case
    gg.config.kernels = False
    reference = _steps(cls, kw, dtype, "cpu")
    gg.config.kernels = True
    got = _steps(cls, kw, dtype, device)
    for ref, out in zip(reference, got, strict=True):
        np.testing.assert_allclose(out, ref, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_a_parameter_at_inf_stays_inf_without_weight_decay():
    """0 * inf is NaN: a term that is off is skipped, never multiplied by zero."""
    for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad):
        for kernels in (True, False):
            gg.config.kernels = kernels
            p = gg.tensor(np.array([np.inf, -np.inf], np.float32), requires_grad=True)
            p.grad = gg.tensor(np.array([1.0, 1.0], np.float32))
            kw = {"weight_decay": 0.0} if cls is optim.AdamW else {}
            cls([p], lr=0.1, **kw).step()
            assert p.numpy().tolist() == [np.inf, -np.inf], (cls.__name__, kernels)


def test_the_rules_match_pytorch_on_finite_values():
    torch = pytest.importorskip("torch")
    names = ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad")
    torch_cls = {name: getattr(torch.optim, name) for name in names}
    finite = np.isfinite(SPECIAL) & np.isfinite(GRADS) & (np.abs(SPECIAL) < 1e20)
    for cls, kw in CONFIGS:
        start, grad = SPECIAL[finite], GRADS[finite]
        p = gg.tensor(start.copy(), requires_grad=True)
        t = torch.tensor(start.copy(), requires_grad=True)
        ours, theirs = cls([p], **kw), torch_cls[cls.__name__]([t], **kw)
        for k in range(3):
            p.grad = gg.tensor(grad * (k + 1))
            t.grad = torch.tensor(grad * (k + 1))
            ours.step()
            theirs.step()
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), rtol=1e-12, atol=1e-300)
