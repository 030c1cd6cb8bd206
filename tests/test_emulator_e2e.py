"""gpugrad's public API on device="cuda" with the emulated device installed: ops, fused losses,
an MLP's forward and backward and optimizer steps run the launchers and kernels, and must agree
with the same computation on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
from emulated import built_kernels, close, emulated_cp  # noqa: F401

import gpugrad as gg
from gpugrad import functional as F

TOL = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-9, atol=1e-11)}


def _both(fn, arrays, dtype):
    """fn on CPU tensors and on CUDA tensors: (outputs, grads) of each."""
    results = []
    for device in ("cpu", "cuda"):
        ts = [gg.tensor(a.astype(dtype), device=device, requires_grad=True) for a in arrays]
        out = fn(*ts)
        out.sum().backward() if out.ndim else out.backward()
        assert out.device.startswith(device)
        results.append((out.numpy(), [t.grad.numpy() for t in ts]))
    return results


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "name,fn",
    [
        ("relu", lambda x: x.relu()),
        ("sigmoid", lambda x: x.sigmoid()),
        ("tanh", lambda x: x.tanh()),
        ("leaky_relu", lambda x: x.leaky_relu(0.1)),
        ("softmax last axis", lambda x: F.softmax(x, axis=-1) * x),
        ("softmax axis 0", lambda x: F.softmax(x, axis=0) * x),
        ("log_softmax", lambda x: F.log_softmax(x, axis=-1) * x),
    ],
)
def test_ops_on_the_emulated_device_match_the_cpu(cp, name, fn, dtype):
    x = np.random.default_rng(0).standard_normal((37, 45)) * 3
    (out, (g,)), (out2, (g2,)) = _both(fn, [x], dtype)
    close(out2, out, dtype, f"{name} forward", TOL[dtype])
    close(g2, g, dtype, f"{name} gradient", TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_losses_on_the_emulated_device_match_the_cpu(cp, reduction, dtype):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((50, 1100 if reduction == "sum" else 10)) * 2
    targets = rng.integers(0, logits.shape[1], 50)
    targets[::7] = -100
    for name, fn in (
        (
            "cross_entropy",
            lambda x: F.cross_entropy(x, gg.tensor(targets, device=x.device), reduction=reduction),
        ),
        ("mse_loss", lambda x: F.mse_loss(x, x.detach() * 0.5 + 1, reduction=reduction)),
        (
            "bce_with_logits",
            lambda x: F.binary_cross_entropy_with_logits(
                x, gg.tensor(np.full(x.shape, 0.3, dtype), device=x.device), reduction=reduction
            ),
        ),
    ):
        (out, (g,)), (out2, (g2,)) = _both(fn, [logits], dtype)
        close(out2, out, dtype, f"{name} ({reduction})", TOL[dtype])
        close(g2, g, dtype, f"{name} gradient ({reduction})", TOL[dtype])


@pytest.mark.parametrize("matmul", ["cupy", "custom"])
def test_mlp_forward_backward_and_adam_steps_match_the_cpu(cp, matmul):
    gg.config.matmul = matmul  # "custom": the tiled kernel, not cupy.matmul
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((33, 20)).astype(np.float32), rng.integers(0, 7, 33)
    results = {}
    for device in ("cpu", "cuda"):
        gg.manual_seed(0)
        model = gg.nn.MLP([20, 48, 36, 7], device=device)
        opt = gg.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(gg.tensor(x, device=device)), gg.tensor(y, device=device))
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
        results[device] = (losses, [p.numpy() for p in model.parameters()])
    close(results["cuda"][0], results["cpu"][0], "float32", "losses", TOL["float32"])
    for k, (a, b) in enumerate(zip(results["cuda"][1], results["cpu"][1], strict=True)):
        close(a, b, "float32", f"parameter {k} after 3 Adam steps", TOL["float32"])


def test_sgd_with_momentum_on_the_emulated_device_matches_the_cpu(cp):
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((70000,)).astype(np.float32)  # two optimizer chunks
    results = {}
    for device in ("cpu", "cuda"):
        w = gg.tensor(w0.copy(), device=device, requires_grad=True)  # the CPU one shares w0
        opt = gg.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
        for _ in range(3):
            opt.zero_grad()
            (w * w).sum().backward()
            opt.step()
        results[device] = w.numpy()
    close(results["cuda"], results["cpu"], "float32", "SGD parameters", TOL["float32"])


@pytest.fixture
def _restore_capture_flag():
    from gpugrad import cuda_graph

    yield
    cuda_graph._capturing = False  # contain the failure below to this test


def test_a_failed_graph_capture_leaves_input_checks_on(cp, _restore_capture_flag):
    x = gg.tensor(np.zeros((2, 3), np.float32), device="cuda")
    with pytest.raises(Exception, match="capture"):
        gg.cuda.graph(lambda a: a * 2, x)
    assert not gg.cuda.is_capturing()
