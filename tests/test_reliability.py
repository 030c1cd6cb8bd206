"""The reliability contract of ``tests/README.md`` (the bad inputs gpugrad must survive), row by
row: each test is named after its row (``test_rowNN_...``) and runs on the CPU and, through the
``device`` fixture, on a GPU where there is one. Rows that other tests already cover keep those
tests too; ``tests/README.md`` maps every row to its tests. Also here: anomaly mode, in-place
safety, and GPU faults (out of memory, kernel errors)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, tol
from opinfo import bce_with_logits_composed, cross_entropy_composed, log_softmax_composed

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import nn, optim, state


def _t(a, device, grad=True, dtype=np.float64):
    return gg.tensor(np.asarray(a, dtype), device=device, requires_grad=grad)


def _needs_cuda():
    reason = gg.cuda.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA device: {reason}")


# ----------------------------------------------------------------------------- rows 1-6


def test_row01_a_10000_node_chain_backpropagates_without_recursion(device):
    x = _t(1.0, device)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert np.isclose(x.grad.item(), 1.0001**10_000)


def test_row02_diamond_gradients_accumulate(device):
    a = _t(3.0, device)
    b = a + a
    c = b + b
    c.backward()
    assert a.grad.item() == 4.0
    a2 = _t(2.0, device)
    (a2 * a2 + a2.exp() * a2).backward()  # uses of a2 on three paths
    assert np.isclose(a2.grad.item(), 2 * 2.0 + np.exp(2.0) * 3.0)


@pytest.mark.parametrize("xs, ys", [((1,), (5, 4)), ((4, 1), (1, 4)), ((), (5, 4)), ((5, 4), (4,))])
def test_row03_broadcast_gradients_sum_over_broadcast_dims(xs, ys, device):
    rng = np.random.default_rng(0)
    xa, ya = rng.standard_normal(xs), rng.standard_normal(ys)
    x, y = _t(xa, device), _t(ya, device)
    (x * y).sum().backward()
    assert x.grad.shape == x.shape and y.grad.shape == y.shape
    full = np.broadcast_shapes(xs, ys)
    gx = np.broadcast_to(ya, full)
    gx = gx.sum(axis=tuple(range(len(full) - len(xs)))) if len(full) > len(xs) else gx
    gx = gx.sum(axis=tuple(i for i, n in enumerate(xs) if n == 1), keepdims=True)
    assert_close(x.grad, np.reshape(gx, xs), **tol(np.float64, "grad"), what="broadcast grad")


@pytest.mark.parametrize(
    "shape, axis, keepdims",
    [((2, 3, 4), (0, 2), True), ((2, 3, 4), (0, 2), False), ((5,), 0, False), ((3, 4), -1, True)],
)
def test_row04_reduction_grads_restore_shape_and_mean_divides_by_input_count(
    shape, axis, keepdims, device
):
    x = _t(np.ones(shape), device)
    out = x.mean(axis=axis, keepdims=keepdims)
    assert out.shape == np.ones(shape).mean(axis=axis, keepdims=keepdims).shape
    out.sum().backward()
    count = np.prod([shape[a] for a in np.atleast_1d(axis)])
    assert x.grad.shape == shape
    assert np.allclose(x.grad.numpy(), 1.0 / count)


def test_row05_zero_d_size_one_and_empty_tensors(device):
    s = _t(2.0, device)
    (s * s).backward()
    assert s.grad.shape == () and s.grad.item() == 4.0
    one = _t(np.ones((1, 1, 3)), device)
    (one.squeeze() * 2).sum().backward()
    assert one.grad.shape == (1, 1, 3)
    for shape in [(0,), (0, 3)]:
        e = _t(np.zeros(shape), device)
        (e.exp() * 2).sum().backward()
        assert e.grad.shape == shape and e.grad.size == 0
    empty = _t(np.zeros((0,)), device)
    with pytest.warns(RuntimeWarning, match="[Mm]ean of empty"):
        m = empty.mean()  # NumPy's answer and warning: NaN
    assert np.isnan(m.item())


def test_row06_strided_transposed_and_stride0_inputs_match_contiguous(device):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((8, 6))
    for view in (base[::2], base.T, base[:, 1::2], np.broadcast_to(base[:1], (8, 6))):
        assert not view.flags.c_contiguous
        vals = []
        labels = rng.integers(0, view.shape[1], view.shape[0])
        for arr in (view, np.ascontiguousarray(view)):
            x = _t(arr, device)
            t = gg.tensor(labels, device=device)
            loss = F.cross_entropy(F.softmax(x).log() * 0.5 + x.tanh(), t) + (x @ x.T).mean()
            loss.backward()
            vals.append((loss.numpy(), x.grad.numpy()))
        assert_close(vals[0][0], vals[1][0], **tol(np.float64), what="strided loss")
        assert_close(vals[0][1], vals[1][1], **tol(np.float64, "grad"), what="strided grad")
    # Tensor views made inside the graph (x[::2], x.T) are inputs like any other
    x = _t(base, device)
    (x[::2] * x.T.T[::2] + x.T[::2].T.sum()).sum().backward()
    expected = np.zeros_like(base)
    expected[::2] = 2 * base[::2]
    expected[:, ::2] += 24  # columns 0, 2, 4 summed to a scalar added to 24 elements
    assert_close(x.grad, expected, **tol(np.float64, "grad"), what="graph views")


# ----------------------------------------------------------------------------- rows 7-11


@pytest.mark.parametrize("magnitude", [88.0, 1000.0, 1e4])
def test_row07_extreme_logits_give_finite_losses_and_grads(magnitude, device):
    for dtype in (np.float32, np.float64):
        logits = np.array([[magnitude, -magnitude, 0.0], [-magnitude, magnitude, magnitude]])
        fns = {
            "softmax": lambda x: F.softmax(x)[:, 0].sum(),
            "log_softmax": lambda x: F.log_softmax(x)[:, 0].sum(),
            "cross_entropy": lambda x: F.cross_entropy(x, gg.tensor([1, 0], device=device)),
            "sigmoid": lambda x: x.sigmoid().sum(),
            "bce_with_logits": lambda x: F.binary_cross_entropy_with_logits(x, x * 0 + 0.3),
            "tanh": lambda x: x.tanh().sum(),
            # softplus(x) = log(1 + e^x), the stable way: BCE-with-logits against target 0
            "softplus": lambda x: F.binary_cross_entropy_with_logits(x, x * 0, reduction="sum"),
            "bias_act": lambda x: _bias_act(x, x[0] * 0, "sigmoid").sum(),
        }
        for name, fn in fns.items():
            x = _t(logits, device, dtype=dtype)
            out = fn(x)
            out.backward()
            assert np.isfinite(out.numpy()).all(), f"{name} loss at {magnitude}"
            assert np.isfinite(x.grad.numpy()).all(), f"{name} grad at {magnitude}"


def _grad_of(fn, value, device):
    x = _t(np.array([value]), device)
    y = fn(x)
    y.backward(np.ones(1))
    return y.numpy()[0], x.grad.numpy()[0]


def test_row08_exact_zeros_follow_ieee(device):
    assert _grad_of(lambda x: x.log(), 0.0, device) == (-np.inf, np.inf)
    assert _grad_of(lambda x: x.sqrt(), 0.0, device) == (0.0, np.inf)
    assert _grad_of(lambda x: 1 / x, 0.0, device) == (np.inf, -np.inf)
    assert _grad_of(lambda x: x**0.0, 0.0, device) == (1.0, 0.0)  # 0**0 = 1, d/dx 0 (PyTorch)
    assert _grad_of(lambda x: x**-1.0, 0.0, device) == (np.inf, -np.inf)
    value, grad = _grad_of(lambda x: x / x, 0.0, device)
    assert np.isnan(value) and np.isnan(grad)


def test_row09_kinks_use_documented_subgradients_and_gradcheck_avoids_them(device):
    # test_ops.py::test_grad_at_kinks_is_the_documented_subgradient covers every kinked op;
    # here the composite rules that sit on top of them.
    x = _t([0.0, 0.0, 1.0], device)
    x.max().backward()
    assert x.grad.numpy().tolist() == [0.0, 0.0, 1.0]
    t = _t([2.0, 2.0, 1.0], device)
    t.max().backward()
    assert t.grad.numpy().tolist() == [0.5, 0.5, 0.0]  # torch.amax's even split
    r = _t([0.0], device)
    r.relu().sum().backward()
    assert r.grad.item() == 0.0
    from opinfo import away_from_zero

    assert np.abs(away_from_zero(np.random.default_rng(0), 1000)).min() >= 0.2


def test_row10_nan_and_inf_propagate_and_anomaly_mode_stops_at_the_first(device):
    x = _t([1.0, np.nan, np.inf], device)
    y = (x * 2).tanh().sum() + (x.exp() * 0 + 1).sum()
    assert np.isnan(y.item())
    y.backward()
    assert np.isnan(x.grad.numpy()[1])  # NaN is not masked to 0
    w = _t([1.0, 2.0], device)
    (w * 3).backward(np.array([np.nan, 1.0]))  # a NaN upstream gradient reaches the leaf
    assert np.isnan(w.grad.numpy()[0]) and w.grad.numpy()[1] == 3.0
    with gg.detect_anomaly():
        z = _t([0.0, 1.0], device)
        h = z * 2  # the forward traceback in the error points at the next line
        with pytest.raises(FloatingPointError, match=r"'log'.*test_reliability\.py:\d+"):
            h.log()


def test_row11_float16_losses_and_reductions_accumulate_in_float32(device):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((512, 10)) * 3
    labels = rng.integers(0, 10, 512)
    cases = {
        "mse": (lambda a, t: F.mse_loss(a, t), x * 30, np.zeros_like(x)),  # squares sum > 65504
        "var": (lambda a: a.var(), x * 30 + 100),
        "sum": (lambda a: a.sum(), np.full(4096, 0.1)),  # a float16 running sum stalls at 256
        "mean": (lambda a: a.mean(), x * 30 + 100),
        "cross_entropy": (lambda a, t: F.cross_entropy(a, t), x, labels),
        "bce_logits": (F.binary_cross_entropy_with_logits, x, rng.random(x.shape)),
        "bce": (
            lambda a, t: F.binary_cross_entropy(a, t),
            rng.uniform(0.05, 0.95, x.shape),
            rng.random(x.shape),
        ),  # fmt: skip
        "multi_margin": (lambda a, t: F.multi_margin_loss(a, t), x, labels),
        "log_softmax": (lambda a: F.log_softmax(a).sum(), x),
    }
    for kernels in (True, False):
        gg.config.kernels = kernels
        for name, (fn, first, *rest) in cases.items():
            out = {}
            for dtype in (np.float16, np.float64):
                a = gg.tensor(first.astype(dtype), device=device, requires_grad=True)
                others = [
                    gg.tensor(r.astype(dtype) if r.dtype.kind == "f" else r, device=device)
                    for r in rest
                ]
                y = fn(a, *others)
                y.backward()
                assert y.dtype == dtype, f"{name}: {dtype} in, {y.dtype} out"
                out[dtype] = (y.numpy().astype(np.float64), a.grad.numpy().astype(np.float64))
            (v16, g16), (v64, g64) = out[np.float16], out[np.float64]
            what = f"{name} float16 (kernels={kernels})"
            assert np.isfinite(v16) and np.isfinite(g16).all(), f"{what}: overflow"
            assert abs(v16 - v64) <= 2e-3 * abs(v64) + 1e-3, f"{what}: {v16} vs {v64}"
            scale = np.abs(g64).max()
            assert np.abs(g16 - g64).max() <= 5e-3 * scale + 1e-6, f"{what} gradient"


# ----------------------------------------------------------------------------- rows 12-19


def test_row12_integer_tensors_refuse_requires_grad(device):
    for dtype in (np.int32, np.int64, np.bool_):
        with pytest.raises(RuntimeError, match="only floating point tensors can require grad"):
            gg.tensor(np.zeros(3, dtype), device=device, requires_grad=True)


def test_row13_non_scalar_backward_needs_a_gradient(device):
    y = _t([1.0, 2.0], device) * 2
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        y.backward()


def test_row14_second_backward_needs_retain_graph_and_then_accumulates(device):
    x = _t(3.0, device)
    y = x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.item() == 12.0
    with pytest.raises(RuntimeError, match="backward through the graph a second time.*'mul'"):
        y.backward()


def test_row15_in_place_change_of_a_saved_tensor_raises_naming_the_op(device):
    x = _t([1.0, 2.0], device)
    h = x * 1
    y = h.exp() * h  # exp saves its output, mul saves both inputs
    h += 1
    with pytest.raises(RuntimeError, match=r"gradient of 'mul'.*input 1 \(2,\) is at version 1"):
        y.sum().backward()


def test_row16_mixing_devices_names_both(device):
    # The check runs before any array code; without a GPU a tensor labelled cuda:1 stands in.
    a = _t([1.0], "cpu")
    other = gg.Tensor._wrap(np.ones(1), "cuda:1") if device == "cpu" else _t([1.0], device)
    with pytest.raises(RuntimeError, match=r"found cpu and cuda:\d"):
        a + other


@pytest.mark.gpu
def test_row16_two_gpu_ids_are_named():
    _needs_cuda()
    if gg.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    with pytest.raises(RuntimeError, match="found cuda:0 and cuda:1"):
        gg.ones(2, device="cuda:0") + gg.ones(2, device="cuda:1")


def test_row17_dtypes_promote_or_refuse_and_class_targets_are_checked(device):
    a32 = gg.tensor(np.ones(2, np.float32), device=device, requires_grad=True)
    a64 = gg.tensor(np.ones(2, np.float64), device=device, requires_grad=True)
    (a32 * a64).sum().backward()
    assert (a32 * a64).dtype == np.float64 and a32.grad.dtype == np.float32
    with pytest.raises(TypeError, match="matmul.*dtypes differ"):
        a32 @ a64
    logits = _t(np.zeros((3, 4)), device)
    with pytest.raises(TypeError, match="targets must be integer"):
        F.cross_entropy(logits, gg.tensor(np.zeros(3), device=device))
    for bad in (-1, 4, 100):
        with pytest.raises(IndexError, match=f"target {bad} is out of range for 4 classes"):
            F.cross_entropy(logits, gg.tensor([0, bad, 1], device=device))
        with pytest.raises(IndexError, match=f"target {bad} is out of range"):
            F.multi_margin_loss(logits, gg.tensor([bad, 0, 1], device=device))
    x = _t(np.random.default_rng(3).standard_normal((3, 4)), device)
    loss = F.cross_entropy(x, gg.tensor([1, -100, 2], device=device))
    loss.backward()
    kept = F.cross_entropy(_t(x.numpy()[[0, 2]], device), gg.tensor([1, 2], device=device))
    assert np.isclose(loss.item(), kept.item())  # ignored rows leave the mean
    assert not x.grad.numpy()[1].any()
    loss7 = F.cross_entropy(x, gg.tensor([7, 1, 7], device=device), ignore_index=7)
    assert np.isfinite(loss7.item())


def test_row18_no_grad_and_plain_leaves_record_nothing(device):
    w = _t([1.0, 2.0], device)
    with gg.no_grad():
        y = (w * 2).exp().sum()
    assert y._node is None and not y.requires_grad and w.grad is None
    plain = _t([1.0, 2.0], device, grad=False)
    z = (plain * 2).exp().sum()
    assert z._node is None and not z.requires_grad and plain.grad is None


def test_row19_unused_parameter_keeps_grad_none(device):
    used, unused = _t([1.0], device), _t([2.0], device)
    _ = unused * 3  # in a graph, but not in the loss's
    (used * 2).sum().backward()
    assert used.grad is not None and unused.grad is None


# ----------------------------------------------------------------------------- rows 20-25


def _train(seed, device, steps=20):
    gg.manual_seed(seed)
    model = nn.MLP([8, 16, 3], activation="tanh").to(device)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(seed)
    x = gg.tensor(rng.standard_normal((32, 8)).astype(np.float32), device=device)
    t = gg.tensor(rng.integers(0, 3, 32), device=device)
    for _ in range(steps):
        loss = F.cross_entropy(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.numpy(), [p.numpy().copy() for p in model.parameters()]


def test_row20_same_seed_same_device_is_bitwise_identical(device):
    if device != "cpu":
        gg.config.deterministic = True  # the bias_act backward's atomics take the fixed order
    a, b = _train(0, device), _train(0, device)
    assert a[0].tobytes() == b[0].tobytes()
    assert all(p.tobytes() == q.tobytes() for p, q in zip(a[1], b[1], strict=True))
    assert _train(1, device)[0].tobytes() != a[0].tobytes()


def test_row20_deterministic_flag_raises_only_on_nondeterministic_paths():
    assert gg.config.deterministic is False
    state.nondeterministic("anything")  # allowed while the flag is off
    gg.config.deterministic = True
    with pytest.raises(RuntimeError, match="scatter.*nondeterministic.*deterministic is True"):
        state.nondeterministic("a scatter-add")
    x = _t(np.ones((4, 3)), "cpu")  # the CPU paths are all deterministic: nothing raises
    x[np.array([0, 0, 1])].sum().backward()
    assert x.grad.numpy()[0, 0] == 2.0


@pytest.mark.gpu
def test_row20_deterministic_flag_on_the_gpu():
    _needs_cuda()
    gg.config.deterministic = True
    x = gg.tensor(np.ones((4, 3), np.float32), device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match="getitem.*nondeterministic"):
        x[np.array([0, 0, 1])].sum().backward()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4096, 33)).astype(np.float32)
    dbs = []
    for _ in range(3):
        zt = gg.tensor(z, device="cuda", requires_grad=True)
        b = gg.tensor(np.zeros(33, np.float32), device="cuda", requires_grad=True)
        _bias_act(zt, b).sum().backward()
        dbs.append(b.grad.numpy().tobytes())
    assert len(set(dbs)) == 1


def _bias_act(z, b, activation="relu"):
    from gpugrad import fused

    return fused.bias_act(z, b, activation=activation)


@pytest.mark.gpu
def test_row21_cpu_and_gpu_agree_on_training_steps():
    # tests/test_ops.py::test_cpu_and_gpu_agree_on_values_and_grads does every op-table sample
    _needs_cuda()
    (loss_cpu, params_cpu), (loss_gpu, params_gpu) = _train(0, "cpu", 5), _train(0, "cuda", 5)
    assert_close(loss_gpu, loss_cpu, **tol(np.float32), what="loss cpu vs cuda")
    for p, q in zip(params_cpu, params_gpu, strict=True):
        assert_close(q, p, rtol=1e-4, atol=1e-5, what="params after 5 Adam steps")


def test_row22_gradcheck_runs_in_float64_with_torch_defaults():
    import inspect

    params = inspect.signature(gg.gradcheck).parameters
    assert (params["eps"].default, params["atol"].default, params["rtol"].default) == (
        1e-6,
        1e-5,
        1e-3,
    )
    seen = []

    def fn(x):
        seen.append(x.dtype)
        return (x * x).sum()

    gg.gradcheck(fn, [gg.tensor(np.ones(3, np.float32), requires_grad=True)])
    assert set(seen) == {np.dtype(np.float64)}
    with pytest.raises(gg.GradcheckError, match="random direction"):
        gg.gradcheck(lambda x: _wrong_square(x).sum(), [_t(np.ones(50), "cpu")], mode="random")


def _wrong_square(x):
    # x * x.detach() has gradient x, not 2x: a wrong gradient gradcheck must catch
    return x * x.detach()


@pytest.mark.parametrize("c", [5, 7, 33, 130])  # not multiples of the vector width of 4
def test_row23_fused_losses_match_compositions_on_edge_inputs(c, device):
    rng = np.random.default_rng(c)
    for dtype in (np.float32, np.float64):
        logits = rng.standard_normal((6, c))
        logits[0, :2] = [1e4, -1e4]  # row 7
        labels = rng.integers(0, c, 6)
        labels[2] = -100  # row 17: ignored
        results = []
        for fn in (F.cross_entropy, cross_entropy_composed):
            x = _t(logits, device, dtype=dtype)
            loss = fn(x, gg.tensor(labels, device=device))
            loss.backward()
            results.append((loss.numpy(), x.grad.numpy()))
        what = f"cross_entropy C={c} {np.dtype(dtype).name}"
        assert_close(results[0][0], results[1][0], **tol(dtype, "grad"), what=what)
        assert_close(results[0][1], results[1][1], **tol(dtype, "grad"), what=what)
        s = rng.standard_normal((3, c)) * 5
        s[0, 0] = 1e4
        tgt = rng.random((3, c))
        results = []
        for fn in (F.binary_cross_entropy_with_logits, bce_with_logits_composed):
            x = _t(s, device, dtype=dtype)
            loss = fn(x, gg.tensor(tgt.astype(dtype), device=device))
            loss.backward()
            results.append((loss.numpy(), x.grad.numpy()))
        assert_close(results[0][0], results[1][0], **tol(dtype, "grad"), what=f"bce C={c}")
        assert_close(results[0][1], results[1][1], **tol(dtype, "grad"), what=f"bce C={c}")
    # row 10 through the fused path: a NaN logit makes its row's loss NaN, others stay finite
    x = _t(np.where(np.arange(c) == 0, np.nan, 0.0)[None].repeat(2, 0), device)
    x.data[1] = 0.0
    per_row = F.cross_entropy(x, gg.tensor([0, 1], device=device), reduction="none")
    composed = -log_softmax_composed(x.detach(), 1).numpy()[[0, 1], [0, 1]]
    assert np.isnan(per_row.numpy()[0]) and np.isnan(composed[0])
    assert np.isclose(per_row.numpy()[1], composed[1])


def test_row23_fused_optimizer_step_matches_the_reference_step(device):
    # tests/test_optim.py::test_fused_step_matches_reference_step covers every configuration
    outs = []
    for kernels in (True, False):
        gg.config.kernels = kernels
        outs.append(_train(3, device, steps=5)[1])
    for p, q in zip(*outs, strict=True):
        assert_close(p, q, **tol(np.float32, "grad"), what="fused vs reference Adam")


@pytest.mark.gpu
def test_row24_graph_replay_matches_eager_steps_without_leaks_or_host_syncs():
    _needs_cuda()
    import cupy

    rng = np.random.default_rng(0)
    xs = [gg.tensor(rng.standard_normal((16, 8)).astype(np.float32), device="cuda") for _ in "abcd"]
    t = gg.tensor(rng.integers(0, 3, 16), device="cuda")

    def make():
        gg.manual_seed(0)
        model = nn.MLP([8, 16, 3], activation="tanh").to("cuda")
        opt = optim.SGD(model.parameters(), lr=0.1)  # no Python-side step counter to replay

        def step(x, target):
            loss = F.cross_entropy(model(x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        return model, step

    eager_model, eager_step = make()
    for _ in range(3):  # what graph()'s warm-up runs on the example inputs
        eager_step(xs[0], t)
    model, step = make()
    captured = gg.cuda.graph(step, xs[0], t, warmup=3)
    pool_after_capture = cupy.get_default_memory_pool().used_bytes()
    for k in (1, 2, 3):  # at least 3 consecutive replays
        loss_eager = eager_step(xs[k], t)
        loss_replay = captured(xs[k], t)
        captured.synchronize()
        assert_close(loss_replay, loss_eager.numpy(), rtol=1e-5, atol=1e-6, what=f"loss {k}")
        for p, q in zip(model.parameters(), eager_model.parameters(), strict=True):
            assert_close(p, q.numpy(), rtol=1e-5, atol=1e-6, what=f"params after replay {k}")
            assert p.grad is not None and np.abs(p.grad.numpy()).max() > 0  # tinygrad #16571
    assert cupy.get_default_memory_pool().used_bytes() == pool_after_capture  # no leak per replay
    with pytest.raises(RuntimeError, match="cannot be captured"):
        gg.cuda.graph(lambda x: gg.tensor(x.sum().item()), xs[0])


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_row25_optimizer_state_dict_round_trip_continues_identically(name, device):
    def make(seed=0):
        gg.manual_seed(seed)
        model = nn.MLP([4, 8, 2], activation="relu").to(device)
        kind = optim.SGD if name == "sgd" else optim.Adam
        kw = {"lr": 0.05, "momentum": 0.9} if name == "sgd" else {"lr": 0.01}
        return model, kind(model.parameters(), **kw)

    x = gg.tensor(np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32))
    x = x.to(device)
    t = gg.tensor(np.arange(16) % 2, device=device)

    def step(model, opt):
        opt.zero_grad()
        F.cross_entropy(model(x), t).backward()
        opt.step()

    model, opt = make()
    for _ in range(6):
        step(model, opt)
    model2, opt2 = make()
    for _ in range(3):
        step(model2, opt2)
    saved_model, saved_opt = model2.state_dict(), opt2.state_dict()
    model3, opt3 = make(seed=9)  # different initial weights: everything must come from the save
    model3.load_state_dict(saved_model)
    opt3.load_state_dict(saved_opt)
    for _ in range(3):
        step(model3, opt3)
    for p, q in zip(model.parameters(), model3.parameters(), strict=True):
        assert p.numpy().tobytes() == q.numpy().tobytes()


# ----------------------------------------------------------------------------- anomaly mode


def test_anomaly_names_op_user_line_and_shapes_for_forward_and_backward(device):
    x = _t([0.0, 1.0, 4.0], device)
    with gg.detect_anomaly():
        with pytest.raises(FloatingPointError) as info:
            (x * 0).log()
        message = str(info.value)
        assert "'log'" in message and "(3,)" in message
        assert f"{__file__}:" in message
        y = x.sqrt() * 0.0  # finite forward; sqrt'(0) = inf times 0 is NaN in backward
        with pytest.raises(FloatingPointError, match=r"backward of 'sqrt'.*input 0 \(3,\)") as b:
            y.sum().backward()
        assert f"{__file__}:" in str(b.value)


def test_anomaly_checks_backward_of_graphs_built_before_it_was_enabled(device):
    x = _t([0.0], device)
    y = x.sqrt() * 0.0
    with gg.detect_anomaly(), pytest.raises(FloatingPointError, match="backward of 'sqrt'"):
        y.sum().backward()


def test_anomaly_mode_is_off_again_after_the_block_and_stays_quiet_on_finite_values(device):
    with gg.detect_anomaly():
        x = _t([1.0, 2.0], device)
        (x.log() * x).sum().backward()
    assert state.anomaly.enabled is False
    (x * 0).log()  # -inf without anomaly mode: no error


# ----------------------------------------------------------------------------- in-place safety


def test_in_place_ops_bump_the_version_counter(device):
    x = _t([1.0, 2.0], device, grad=False)
    v0 = x._version[0]
    x += 1
    x *= 2
    x -= 1
    x /= 2
    x[0] = 5.0
    x[...] = gg.tensor([1.0, 1.0], device=device)
    assert x._version[0] == v0 + 6
    view = x[0:1]
    view += 1  # a view shares its base's counter
    assert x._version[0] == v0 + 7


def test_optimizer_updates_bump_versions_and_stay_legal_under_no_grad(device):
    w = _t([1.0, 2.0], device)
    y = (w * w).sum()  # mul saved w
    y.backward(retain_graph=True)
    opt = optim.SGD([w], lr=0.1)
    before = w._version[0]
    opt.step()  # runs under no_grad: legal on a leaf that requires grad
    assert w._version[0] == before + 1
    with pytest.raises(RuntimeError, match="gradient of 'mul' was modified in place"):
        y.backward()  # the saved w is stale now
    with gg.no_grad():
        w -= 0.1 * w.grad  # a hand-written update: legal too
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        w += 1  # but not while recording


def test_setitem_on_a_saved_tensor_raises_at_backward(device):
    x = _t([1.0, 2.0, 3.0], device)
    h = x * 1
    y = (h * h).sum()
    h[1] = 0.0
    with pytest.raises(RuntimeError, match=r"'mul'.*\(3,\) is at version 1, expected version 0"):
        y.backward()


def test_writes_through_views_never_give_a_silently_wrong_gradient(device):
    x = _t([1.0, 1.0], device)
    y = x * 2
    v = y[0:1]
    with pytest.raises(RuntimeError, match="in-place change of a view"):
        v *= 3  # y's graph would not know: refused
    x3 = _t([1.0, 1.0], device)
    y3 = x3 * 2
    y3[0:1] = y3[0:1] + y3[0:1] + y3[0:1]  # the supported way: setitem on the base records it
    y3.sum().backward()
    assert x3.grad.numpy().tolist() == [6.0, 2.0]


# ----------------------------------------------------------------------------- GPU faults


def test_out_of_memory_on_the_host_is_a_gpugrad_error_with_size_and_hint():
    x = gg.tensor(np.ones(1, np.float32)).broadcast_to(2**44)  # a stride-0 view: no memory
    with pytest.raises(gg.OutOfMemoryError, match=r"mul on cpu: .*70,368,744,177,664 bytes.*batch"):
        x * 2
    assert issubclass(gg.OutOfMemoryError, MemoryError)
    assert (gg.tensor([1.0, 2.0]) * 2).tolist() == [2.0, 4.0]  # the process goes on


def test_cupys_out_of_memory_error_is_translated_with_size_and_hint(monkeypatch):
    # CuPy is importable without a GPU: its own error class stands in for a failed cudaMalloc
    # raised from inside an op, which is exactly where CuPy raises it.
    memory = pytest.importorskip("cupy.cuda.memory")
    from gpugrad import ops

    def exhausted(xp, x):
        raise memory.OutOfMemoryError(3 * 2**30, 75 * 2**30)

    monkeypatch.setattr(ops.exp, "fwd", exhausted)
    monkeypatch.setattr(ops.exp, "_fast", {})
    gg.config.kernels = False
    with pytest.raises(gg.OutOfMemoryError) as info:
        gg.tensor([1.0]).exp()
    message = str(info.value)
    assert "exp on cpu" in message and "3,221,225,472 bytes" in message
    assert "80,530,636,800 bytes already allocated" in message and "smaller batch" in message
    assert info.value.size == 3 * 2**30
    assert isinstance(info.value.__cause__, memory.OutOfMemoryError)


@pytest.mark.gpu
def test_gpu_out_of_memory_raises_and_frees_the_pool():
    _needs_cuda()
    import cupy

    pool = cupy.get_default_memory_pool()
    keep = gg.ones(1024, device="cuda") * 2
    x = gg.ones(1, device="cuda").broadcast_to(2**42)  # 16 TiB once materialised
    with pytest.raises(gg.OutOfMemoryError, match=r"17,592,186,044,416 bytes.*released"):
        x * 2
    assert pool.total_bytes() - pool.used_bytes() == 0  # no cached blocks left behind
    assert (keep + 1).numpy()[0] == 3.0  # the process goes on


def test_kernel_errors_name_the_kernel_and_file_without_a_gpu(tmp_path, monkeypatch):
    from gpugrad.backends import cuda

    with pytest.raises(cuda.KernelError, match=r"relu_fwd_v9 is not listed for kernels/act"):
        cuda.function("activations.cu", "relu_fwd_v9", np.float32)
    monkeypatch.setattr(cuda, "KERNEL_DIR", tmp_path)
    with pytest.raises(cuda.KernelError, match=r"cannot read kernel source .*missing\.cu"):
        cuda.source("missing.cu")


def test_a_view_read_after_its_base_changed_in_place_raises():
    x = gg.tensor([1.0, 1.0], requires_grad=True)
    y = x * 2
    v = y[0:1]  # v's graph says 2 * x[0]
    y *= 3  # ...but its memory now holds 6 * x[0]
    with pytest.raises(RuntimeError, match=r"view \(made by 'getitem'\).*changed in place"):
        v.sum().backward()


def test_views_taken_after_an_in_place_change_stay_usable():
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1
    y[0] = y[0] * 5  # reads a view, then writes the base: legitimate
    y *= 2
    v = y[1:]  # taken after the changes: its graph matches its memory
    (v.sum() + y.sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), [10.0, 4.0, 4.0])
