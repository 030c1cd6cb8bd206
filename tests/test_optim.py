"""optim: update rules by hand and against PyTorch, the fused Numba step against the NumPy
reference, state dicts, and the lr schedulers."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import nn, optim

SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.01),
    dict(lr=0.1, momentum=0.5, maximize=True),
]
ADAM_CASES = [
    (optim.Adam, "Adam", dict(lr=0.01)),
    (optim.Adam, "Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, amsgrad=True)),
    (optim.Adam, "Adam", dict(lr=0.01, weight_decay=0.1)),
    (optim.Adam, "Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    (optim.AdamW, "AdamW", dict(lr=0.01)),
    (optim.AdamW, "AdamW", dict(lr=0.01, weight_decay=0.5, amsgrad=True)),
]
RMSPROP_ADAGRAD_CASES = [
    (optim.RMSprop, "RMSprop", dict(lr=0.01)),
    (optim.RMSprop, "RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1)),
    (optim.RMSprop, "RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
    (
        optim.RMSprop,
        "RMSprop",
        dict(lr=0.01, alpha=0.3, momentum=0.5, centered=True, maximize=True),
    ),  # fmt: skip  (alpha < 0.5: lerp's other form)
    (optim.Adagrad, "Adagrad", dict(lr=0.1)),
    (optim.Adagrad, "Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1)),
    (
        optim.Adagrad,
        "Adagrad",
        dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6, maximize=True),
    ),  # fmt: skip
]
SHAPES = [(4, 3), (3,), (2, 2, 2)]


def _params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [gg.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in SHAPES]


def _grads(step, dtype=np.float64, seed=100):
    rng = np.random.default_rng(seed + step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _run(opt, params, steps, start=0, dtype=np.float64):
    for t in range(start, start + steps):
        for p, g in zip(params, _grads(t, dtype), strict=True):
            p.grad = g
        opt.step()
    return [p.numpy().copy() for p in params]


# ----------------------------------------------------------------------------- by hand


def test_sgd_one_step_by_hand():
    w = gg.tensor([1.0, -2.0], requires_grad=True)
    w.grad = [0.5, 0.5]
    optim.SGD([w], lr=0.1).step()
    np.testing.assert_allclose(w.numpy(), [0.95, -2.05], rtol=1e-6)


def test_sgd_momentum_first_step_seeds_buffer_with_the_gradient():
    w = gg.tensor([0.0], dtype=gg.float64, requires_grad=True)
    opt = optim.SGD([w], lr=1.0, momentum=0.9, dampening=0.5)
    w.grad = [1.0]
    opt.step()  # buffer = g = 1 (no dampening on the first step): w = -1
    assert w.item() == pytest.approx(-1.0)
    w.grad = [1.0]
    opt.step()  # buffer = 0.9 * 1 + 0.5 * 1 = 1.4: w = -2.4
    assert w.item() == pytest.approx(-2.4)
    assert opt.state[w]["momentum_buffer"].tolist() == pytest.approx([1.4])


def test_adam_first_two_steps_by_hand():
    w = gg.tensor([1.0], dtype=gg.float64, requires_grad=True)
    opt = optim.Adam([w], lr=0.1, betas=(0.9, 0.999), eps=0.0)
    w.grad = [2.0]
    opt.step()  # bias-corrected m = g and v = g^2: the step is exactly lr * sign(g)
    assert w.item() == pytest.approx(0.9, abs=1e-12)
    w.grad = [-1.0]
    opt.step()
    m = 0.9 * 0.2 + 0.1 * -1.0
    v = 0.999 * 0.001 * 4 + 0.001 * 1.0
    expected = 0.9 - 0.1 / (1 - 0.9**2) * m / (math.sqrt(v) / math.sqrt(1 - 0.999**2))
    assert w.item() == pytest.approx(expected, abs=1e-12)
    assert opt.state[w]["step"] == 2


def test_adamw_decays_weights_decoupled_from_the_gradient():
    w = gg.tensor([2.0], dtype=gg.float64, requires_grad=True)
    opt = optim.AdamW([w], lr=0.1, weight_decay=0.5, eps=0.0)
    w.grad = [3.0]
    opt.step()  # w * (1 - 0.1 * 0.5) - 0.1 * sign(g)
    assert w.item() == pytest.approx(2.0 * 0.95 - 0.1, abs=1e-12)


# ----------------------------------------------------------------------------- vs PyTorch


def _torch_run(torch, cls_name, kw, steps):
    tp = [torch.tensor(p.numpy().copy(), requires_grad=True) for p in _params()]
    opt = getattr(torch.optim, cls_name)(tp, **kw)
    for t in range(steps):
        for p, g in zip(tp, _grads(t), strict=True):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in tp]


@pytest.mark.parametrize("use_kernels", [True, False], ids=["numba", "reference"])
@pytest.mark.parametrize("kw", SGD_CASES, ids=str)
def test_sgd_trajectory_matches_pytorch(kw, use_kernels, kernels):
    torch = pytest.importorskip("torch")
    kernels(use_kernels)
    params = _params()
    ours = _run(optim.SGD(params, **kw), params, 50)
    for a, b in zip(ours, _torch_run(torch, "SGD", kw, 50), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("use_kernels", [True, False], ids=["numba", "reference"])
@pytest.mark.parametrize("cls, name, kw", ADAM_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_adam_trajectory_matches_pytorch(cls, name, kw, use_kernels, kernels):
    torch = pytest.importorskip("torch")
    kernels(use_kernels)
    params = _params()
    ours = _run(cls(params, **kw), params, 50)
    for a, b in zip(ours, _torch_run(torch, name, kw, 50), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("use_kernels", [True, False], ids=["numba", "reference"])
@pytest.mark.parametrize(
    "cls, name, kw", RMSPROP_ADAGRAD_CASES, ids=lambda v: getattr(v, "__name__", str(v))
)
def test_rmsprop_and_adagrad_trajectories_match_pytorch_in_float64(
    cls, name, kw, use_kernels, kernels
):
    torch = pytest.importorskip("torch")
    kernels(use_kernels)
    params = _params()
    opt = cls(params, **kw)
    ours = _run(opt, params, 50)
    for a, b in zip(ours, _torch_run(torch, name, kw, 50), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
    assert opt.state[params[0]]["step"] == 50


def test_rmsprop_and_adagrad_first_steps_by_hand():
    w = gg.tensor([2.0], dtype=gg.float64, requires_grad=True)
    opt = optim.RMSprop([w], lr=0.1, alpha=0.5, eps=0.0, momentum=0.5)
    w.grad = [1.0]
    opt.step()  # s = 0.5; b = 1 / sqrt(0.5); w = 2 - 0.1 b
    b1 = 1 / math.sqrt(0.5)
    assert w.item() == pytest.approx(2 - 0.1 * b1, rel=1e-15)
    w.grad = [3.0]
    opt.step()  # s = 0.25 + 4.5; b = 0.5 b1 + 3 / sqrt(s)
    b2 = 0.5 * b1 + 3 / math.sqrt(4.75)
    assert w.item() == pytest.approx(2 - 0.1 * b1 - 0.1 * b2, rel=1e-15)

    v = gg.tensor([1.0], dtype=gg.float64, requires_grad=True)
    opt = optim.Adagrad([v], lr=1.0, lr_decay=1.0, initial_accumulator_value=3.0, eps=0.0)
    v.grad = [1.0]
    opt.step()  # sum = 3 + 1; v -= 1 / 2
    assert v.item() == 0.5
    v.grad = [2.0]
    opt.step()  # sum = 8; lr 1 / (1 + 1); v -= 0.5 * 2 / sqrt(8)
    assert v.item() == pytest.approx(0.5 - 1 / math.sqrt(8), rel=1e-15)


# ----------------------------------------------------------------------------- fused vs reference


ALL_CASES = [(optim.SGD, kw) for kw in SGD_CASES] + [
    (c, kw) for c, _, kw in ADAM_CASES + RMSPROP_ADAGRAD_CASES
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kw", ALL_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_fused_step_matches_reference_step(cls, kw, dtype, kernels):
    results = []
    for on in (True, False):
        kernels(on)
        params = _params(dtype)
        results.append(_run(cls(params, **kw), params, 5, dtype=dtype))
    # float32: the kernel computes in float64 and rounds once, the reference rounds every op.
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in zip(*results, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("cls, kw", ALL_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_listed_gradients_path_matches_the_packed_path(cls, kw, kernels, monkeypatch):
    from gpugrad.optim import optimizer

    kernels(True)
    results = []
    for threshold in (10**9, 0):  # packed into the flat buffer, then handed over as a list
        monkeypatch.setattr(optimizer, "_LIST_GRADS_ABOVE", threshold)
        params = _params(np.float32)
        opt = cls(params, **kw)
        results.append(_run(opt, params, 4, dtype=np.float32))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kw", ALL_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_one_cuda_launch_step_matches_the_cpu_reference(cls, kw, dtype, kernels):
    if not gg.cuda_is_available():
        pytest.skip("no CUDA device")
    kernels(False)
    params = _params(dtype)
    expected = _run(cls(params, **kw), params, 5, dtype=dtype)
    kernels(True)
    params = [p.to("cuda").detach() for p in _params(dtype)]
    for p in params:
        p.requires_grad = True
    opt = cls(params, **kw)
    for t in range(5):
        for p, g in zip(params, _grads(t, dtype), strict=True):
            p.grad = gg.tensor(g, device="cuda")
        opt.step()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for p, e in zip(params, expected, strict=True):
        np.testing.assert_allclose(p.numpy(), e, rtol=tol, atol=tol)


def test_step_writes_in_place_and_bumps_versions():
    params = _params(np.float32)
    aliases = [p.data for p in params]
    views = [p.data.reshape(-1)[:1] for p in params]
    before = [a.copy() for a in aliases]
    versions = [p._version[0] for p in params]
    _run(optim.Adam(params, lr=0.1), params, 1, dtype=np.float32)
    for p, a, v, b, ver in zip(params, aliases, views, before, versions, strict=True):
        assert p.data is a and not np.array_equal(a, b)
        assert v[0] == a.reshape(-1)[0]
        assert p._version[0] == ver + 1


def test_parameters_without_grad_are_skipped(kernels):
    for on in (True, False):
        kernels(on)
        params = _params()
        before = params[1].numpy().copy()
        opt = optim.Adam(params, lr=0.1)
        for p, g in zip(params, _grads(0), strict=True):
            p.grad = g
        params[1].grad = None
        opt.step()
        np.testing.assert_array_equal(params[1].numpy(), before)
        assert params[1] not in opt.state and opt.state[params[0]]["step"] == 1


def test_param_groups_keep_their_own_hyperparameters(kernels):
    results = []
    for on in (True, False):
        kernels(on)
        params = _params()
        groups = [{"params": params[:1], "lr": 0.5, "momentum": 0.9}, {"params": params[1:]}]
        opt = optim.SGD(groups, lr=0.01)
        assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0
        results.append(_run(opt, params, 3))
    one = _params()
    ref = _run(optim.SGD(one[:1], lr=0.5, momentum=0.9), one, 3)
    np.testing.assert_allclose(results[0][0], ref[0], rtol=1e-12)
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_mixed_dtypes_each_get_updated():
    a = gg.tensor([1.0, 2.0], dtype=gg.float32, requires_grad=True)
    b = gg.tensor([1.0, 2.0], dtype=gg.float64, requires_grad=True)
    a.grad, b.grad = [1.0, 1.0], [1.0, 1.0]
    optim.SGD([a, b], lr=0.5).step()
    assert a.tolist() == [0.5, 1.5] and b.tolist() == [0.5, 1.5]


def test_training_an_mlp_reduces_the_loss():
    gg.manual_seed(0)
    model = nn.MLP([2, 16, 1], activation="tanh")
    opt = optim.Adam(model.parameters(), lr=0.05)
    x = gg.randn(64, 2)
    y = (x[:, 0:1] * x[:, 1:2]).detach()
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert all(p.grad is None for p in model.parameters()) is False
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_module_to_after_optimizer_creation_keeps_training(kernels):
    lin = nn.Linear(3, 2)
    opt = optim.Adam(lin.parameters(), lr=0.1)
    lin(gg.ones((1, 3))).sum().backward()
    opt.step()
    lin.to(gg.float64)  # new arrays: the fused path rebuilds its views and casts the state
    lin.zero_grad()
    before = lin.weight.numpy().copy()
    lin(gg.ones((1, 3), dtype=gg.float64)).sum().backward()
    opt.step()
    assert opt.state[lin.weight]["exp_avg"].dtype == np.float64
    assert not np.array_equal(before, lin.weight.numpy())


def test_constructor_errors():
    p = _params()
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": p}, {"params": p[:1]}], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(p[0], lr=0.1)
    with pytest.raises(ValueError, match="RMSprop: invalid alpha value -0.5"):
        optim.RMSprop(p, alpha=-0.5)
    with pytest.raises(ValueError, match="RMSprop: invalid momentum value nan"):
        optim.RMSprop(p, momentum=float("nan"))
    with pytest.raises(ValueError, match="Adagrad: invalid initial_accumulator_value"):
        optim.Adagrad(p, initial_accumulator_value=-1)
    with pytest.raises(ValueError, match="Adagrad: invalid lr_decay"):
        optim.Adagrad(p, lr_decay=-1)


# ----------------------------------------------------------------------------- state dicts


@pytest.mark.parametrize("use_kernels", [True, False], ids=["numba", "reference"])
@pytest.mark.parametrize("cls, kw", ALL_CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_state_dict_round_trip_continues_like_an_uninterrupted_run(cls, kw, use_kernels, kernels):
    kernels(use_kernels)
    params = _params()
    straight = _run(cls(params, **kw), params, 10)

    first = _params()
    opt = cls(first, **kw)
    _run(opt, first, 5)
    saved = copy.deepcopy(opt.state_dict())
    values = [p.numpy().copy() for p in first]
    if cls is not optim.SGD or kw.get("momentum"):
        assert saved["state"] and all(
            isinstance(v, np.ndarray)
            for st in saved["state"].values()
            for k, v in st.items()
            if k != "step"
        )
    resumed = [gg.tensor(v, requires_grad=True) for v in values]
    opt2 = cls(resumed, lr=123.0)  # the loaded hyperparameters must win
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    after = _run(opt2, resumed, 5, start=5)
    for a, b in zip(straight, after, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_state_dict_is_a_copy_and_load_checks_shapes():
    params = _params()
    opt = optim.Adam(params, lr=0.1)
    _run(opt, params, 1)
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][...] = 99
    assert not (opt.state[params[0]]["exp_avg"] == 99).any()
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros((7,))
    with pytest.raises(ValueError, match=r"parameter 1 has shape \(7,\)"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["param_groups"].append(bad["param_groups"][0])
    with pytest.raises(ValueError, match="2 parameter group"):
        opt.load_state_dict(bad)


# ----------------------------------------------------------------------------- schedulers


def _lrs(sched, opt, epochs):
    out = []
    for _ in range(epochs):
        opt.step()
        sched.step()
        out.append(sched.get_last_lr()[0])
    return out


@pytest.mark.parametrize(
    "name, kw",
    [
        ("StepLR", dict(step_size=3)),
        ("StepLR", dict(step_size=2, gamma=0.5)),
        ("CosineAnnealingLR", dict(T_max=10)),
        ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ],
)
def test_scheduler_lrs_match_pytorch(name, kw):
    torch = pytest.importorskip("torch")
    opt = optim.SGD([gg.zeros(1, requires_grad=True)], lr=0.1)
    sched = getattr(optim, name)(opt, **kw)
    assert sched.get_last_lr() == [0.1]
    ours = _lrs(sched, opt, 30)  # past T_max: the cosine climbs back up
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    theirs = _lrs(tsched, topt, 30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    assert opt.param_groups[0]["lr"] == ours[-1]


def test_step_lr_by_hand_and_state_dict_round_trip():
    opt = optim.SGD([gg.zeros(1, requires_grad=True)], lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    assert _lrs(sched, opt, 4) == [1.0, 0.5, 0.5, 0.25]
    saved = sched.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 4
    opt2 = optim.SGD([gg.zeros(1, requires_grad=True)], lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    sched2 = optim.StepLR(opt2, step_size=99)
    sched2.load_state_dict(saved)
    assert _lrs(sched2, opt2, 3) == _lrs(sched, opt, 3) == [0.25, 0.125, 0.125]


def test_cosine_annealing_reaches_eta_min_at_t_max():
    opt = optim.SGD([gg.zeros(1, requires_grad=True)], lr=0.5)
    sched = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    lrs = _lrs(sched, opt, 4)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-12)
    assert lrs[1] == pytest.approx(0.1 + 0.4 * (1 + math.cos(math.pi * 2 / 4)) / 2)
