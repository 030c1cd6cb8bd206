"""The layers, activations and loss modules against PyTorch (an optional oracle), in float64:
forward values, the input gradient and every parameter gradient to 1e-6 or better, state dict
keys, BatchNorm's running statistics over several training steps and its eval output, and the
losses with class weights, label smoothing and ignore_index together."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import nn

torch = pytest.importorskip("torch")
tnn = torch.nn
TOL = dict(rtol=1e-9, atol=1e-10)  # float64 on both sides: far inside the required 1e-6


def _rng(seed=0):
    return np.random.default_rng(seed)


def _torch_twin(ours, theirs):
    """Give the torch module our parameters and buffers; its keys must be ours exactly."""
    theirs = theirs.double()  # first: loading into float32 parameters would round them
    state = {k: torch.tensor(v) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)
    return theirs


def _run_both(ours, theirs, x, seed=1, train=True):
    """Forward both on x, backward a random cotangent, compare output, dx and every .grad."""
    ours.train(train)
    theirs.train(train)
    floating = x.dtype.kind == "f"
    gx = gg.tensor(x, requires_grad=floating)
    tx = torch.tensor(x, requires_grad=floating)
    out, ref = ours(gx), theirs(tx)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **TOL, err_msg="forward")
    v = _rng(seed).standard_normal(out.shape)
    out.backward(v)
    ref.backward(torch.tensor(v))
    if floating:
        np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), **TOL, err_msg="input grad")
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), theirs_params[name].grad.numpy(), **TOL, err_msg=f"grad of {name}"
        )
    return out, ref


# ----------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "shape, normalized, kwargs",
    [
        ((6, 5), 5, {}),
        ((2, 3, 4), (3, 4), {}),
        ((4, 7), 7, {"elementwise_affine": False}),
        ((4, 7), 7, {"bias": False, "eps": 1e-3}),
        ((3, 2, 1500), 1500, {}),
    ],
)
def test_layer_norm_matches_torch(shape, normalized, kwargs):
    ours = nn.LayerNorm(normalized, dtype=gg.float64, **kwargs)
    if ours.weight is not None:  # not the identity initialisation, so the affine part counts
        ours.weight.data[...] = _rng(2).uniform(0.5, 1.5, ours.weight.shape)
    if ours.bias is not None:
        ours.bias.data[...] = _rng(3).standard_normal(ours.bias.shape)
    theirs = _torch_twin(ours, tnn.LayerNorm(normalized, **kwargs))
    _run_both(ours, theirs, _rng().standard_normal(shape) * 3 + 1)


@pytest.mark.parametrize("kernels_on", [True, False])
def test_layer_norm_numba_and_reference_agree_with_torch(kernels_on):
    gg.config.kernels = kernels_on
    try:
        ours = nn.LayerNorm(33, dtype=gg.float64)
        theirs = _torch_twin(ours, tnn.LayerNorm(33))
        _run_both(ours, theirs, _rng(4).standard_normal((17, 33)))
    finally:
        gg.config.kernels = True


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((8, 3), {}),
        ((4, 3, 5), {}),
        ((8, 3), {"momentum": None}),
        ((8, 3), {"affine": False}),
        ((8, 3), {"momentum": 0.3, "eps": 1e-3}),
    ],
)
def test_batch_norm_running_statistics_and_eval_match_torch(shape, kwargs):
    ours = nn.BatchNorm1d(shape[1], dtype=gg.float64, **kwargs)
    if ours.affine:
        ours.weight.data[...] = _rng(2).uniform(0.5, 1.5, shape[1])
        ours.bias.data[...] = _rng(3).standard_normal(shape[1])
    theirs = _torch_twin(ours, tnn.BatchNorm1d(shape[1], **kwargs))
    for step in range(5):  # several training steps: the running estimates accumulate
        ours.zero_grad()
        theirs.zero_grad()
        x = _rng(10 + step).standard_normal(shape) * (step + 1) + step
        _run_both(ours, theirs, x, seed=step)
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(
                ours.state_dict()[key], value.numpy(), **TOL, err_msg=f"{key} after step {step}"
            )
    assert int(ours.num_batches_tracked.item()) == 5
    ours.zero_grad()
    theirs.zero_grad()
    _run_both(ours, theirs, _rng(99).standard_normal(shape), train=False)  # running stats


def test_batch_norm_without_running_stats_uses_batch_statistics_in_eval_too():
    ours = nn.BatchNorm1d(3, track_running_stats=False, dtype=gg.float64)
    theirs = _torch_twin(ours, tnn.BatchNorm1d(3, track_running_stats=False))
    assert list(ours.state_dict()) == ["weight", "bias"]
    _run_both(ours, theirs, _rng().standard_normal((6, 3)), train=False)


def test_batch_norm_state_dict_has_torchs_keys_and_round_trips():
    bn = nn.BatchNorm1d(4)
    assert list(bn.state_dict()) == list(tnn.BatchNorm1d(4).state_dict())
    bn(gg.randn(8, 4))
    fresh = nn.BatchNorm1d(4)
    fresh.load_state_dict(bn.state_dict())
    for key, value in bn.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value, err_msg=key)
    assert bn.num_batches_tracked.dtype == np.int64
    model = nn.MLP([3, 4, 2], norm="batch")
    keys = list(model.state_dict())
    expected = ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                "1.num_batches_tracked", "3.weight", "3.bias"]  # fmt: skip
    assert keys == expected


def test_batch_norm_needs_more_than_one_value_per_channel_in_training():
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(gg.randn(1, 3))
    bn.eval()
    assert bn(gg.randn(1, 3)).shape == (1, 3)  # eval uses the running statistics: fine
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): expected an input of shape"):
        bn(gg.randn(4, 5))


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch_with_repeats_and_padding(padding_idx):
    ours = nn.Embedding(6, 4, padding_idx=padding_idx, dtype=gg.float64)
    theirs = _torch_twin(ours, tnn.Embedding(6, 4, padding_idx=padding_idx))
    ids = np.array([[0, 2, 2, 5], [5, 1, 2, 0]])  # repeats, and the padding row twice
    _run_both(ours, theirs, ids)
    if padding_idx is not None:
        row = padding_idx % 6
        assert not ours.weight.grad.numpy()[row].any() and not ours.weight.numpy()[row].any()


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(approximate):
    _run_both(nn.GELU(approximate), tnn.GELU(approximate), _rng().standard_normal((5, 7)) * 3)
    x = np.linspace(-10, 10, 41)
    np.testing.assert_allclose(
        F.gelu(gg.tensor(x), approximate).numpy(),
        torch.nn.functional.gelu(torch.tensor(x), approximate=approximate).numpy(),
        **TOL,
    )


def test_silu_softmax_and_log_softmax_match_torch():
    x = _rng().standard_normal((4, 6)) * 4
    _run_both(nn.SiLU(), tnn.SiLU(), x)
    _run_both(nn.Softmax(dim=1), tnn.Softmax(dim=1), x)
    _run_both(nn.LogSoftmax(dim=0), tnn.LogSoftmax(dim=0), x)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "silu", "relu"])
@pytest.mark.parametrize("norm", [None, "layer", "batch"])
def test_mlp_with_norm_and_activation_matches_torch(norm, activation):
    gg.manual_seed(0)
    ours = nn.MLP([5, 8, 6, 3], activation=activation, norm=norm, dtype=gg.float64)
    act = {
        "gelu": tnn.GELU,
        "gelu_tanh": lambda: tnn.GELU("tanh"),
        "silu": tnn.SiLU,
        "relu": tnn.ReLU,
    }[activation]
    layers = []
    for i, (a, b) in enumerate([(5, 8), (8, 6), (6, 3)]):
        layers.append(tnn.Linear(a, b))
        if i < 2:
            if norm is not None:
                layers.append(tnn.LayerNorm(b) if norm == "layer" else tnn.BatchNorm1d(b))
            layers.append(act())
    theirs = _torch_twin(ours, tnn.Sequential(*layers))
    _run_both(ours, theirs, _rng().standard_normal((10, 5)))


def test_mlp_rejects_unknown_norm():
    with pytest.raises(ValueError, match="norm must be 'layer', 'batch' or None"):
        nn.MLP([3, 4, 2], norm="group")


def test_gelu_and_silu_fuse_with_a_preceding_linear():
    net = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 4), nn.SiLU())
    y = net(gg.ones((2, 3), requires_grad=True))
    assert y.grad_fn.name == "bias_act"
    assert net[:2](gg.ones((2, 3), requires_grad=True)).grad_fn.name == "bias_act"


# ----------------------------------------------------------------------------- losses

N, C = 9, 5


def _scores_and_labels(seed=0, ignored=True):
    rng = _rng(seed)
    x = rng.standard_normal((N, C)) * 2
    t = rng.integers(0, C, N)
    if ignored:
        t[[1, 4]] = -100
    return x, t


def _loss_both(ours, theirs, x, target, seed=1):
    gx, tx = gg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = ours(gx, gg.tensor(target)), theirs(tx, torch.tensor(target))
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), **TOL, err_msg="loss")
    v = _rng(seed).standard_normal(out.shape)
    out.backward(v)
    ref.backward(torch.tensor(v))
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), **TOL, err_msg="input grad")


WEIGHTS = np.array([0.2, 1.0, 3.0, 0.7, 1.4])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kernels_on", [True, False])
def test_cross_entropy_with_weight_smoothing_and_ignore_index_matches_torch(
    reduction, label_smoothing, weighted, kernels_on
):
    gg.config.kernels = kernels_on  # the Numba kernel and the NumPy reference alike
    try:
        x, t = _scores_and_labels()
        w = WEIGHTS if weighted else None
        kw = {"reduction": reduction, "label_smoothing": label_smoothing}
        ours = nn.CrossEntropyLoss(weight=None if w is None else gg.tensor(w), **kw)
        theirs = tnn.CrossEntropyLoss(weight=None if w is None else torch.tensor(w), **kw)
        _loss_both(ours, theirs, x, t)
    finally:
        gg.config.kernels = True


def test_cross_entropy_weight_buffer_is_in_the_state_dict_and_every_row_ignored_is_nan():
    loss = nn.CrossEntropyLoss(weight=gg.tensor(WEIGHTS))
    assert list(loss.state_dict()) == list(tnn.CrossEntropyLoss(torch.tensor(WEIGHTS)).state_dict())
    x, _ = _scores_and_labels()
    out = loss(gg.tensor(x), gg.tensor(np.full(N, -100)))
    assert np.isnan(out.item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_torch(reduction, weighted):
    x, t = _scores_and_labels(1)
    logp = x - np.log(np.exp(x).sum(1, keepdims=True))
    w = WEIGHTS if weighted else None
    ours = nn.NLLLoss(weight=None if w is None else gg.tensor(w), reduction=reduction)
    theirs = tnn.NLLLoss(weight=None if w is None else torch.tensor(w), reduction=reduction)
    _loss_both(ours, theirs, logp, t)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_elementwise_loss_modules_match_torch(reduction):
    rng = _rng(2)
    y, t = rng.standard_normal((6, 4)) * 2, rng.standard_normal((6, 4))
    probs = rng.uniform(0, 1, (6, 4))
    pos = rng.uniform(0.5, 3, 4)
    elem_w = rng.uniform(0.5, 2, (6, 4))
    cases = [
        (nn.MSELoss(reduction), tnn.MSELoss(reduction=reduction), t),
        (nn.L1Loss(reduction), tnn.L1Loss(reduction=reduction), t),
        (nn.HuberLoss(reduction), tnn.HuberLoss(reduction=reduction), t),
        (nn.HuberLoss(reduction, delta=0.3), tnn.HuberLoss(reduction=reduction, delta=0.3), t),
        (nn.SmoothL1Loss(reduction), tnn.SmoothL1Loss(reduction=reduction), t),
        (nn.SmoothL1Loss(reduction, beta=0.4), tnn.SmoothL1Loss(reduction=reduction, beta=0.4),
         t),
        (nn.SmoothL1Loss(reduction, beta=0.0), tnn.SmoothL1Loss(reduction=reduction, beta=0.0),
         t),
        (nn.BCEWithLogitsLoss(reduction=reduction), tnn.BCEWithLogitsLoss(reduction=reduction),
         probs),
        (nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=gg.tensor(pos)),
         tnn.BCEWithLogitsLoss(reduction=reduction, pos_weight=torch.tensor(pos)), probs),
        (nn.BCEWithLogitsLoss(gg.tensor(elem_w), reduction, gg.tensor(pos)),
         tnn.BCEWithLogitsLoss(torch.tensor(elem_w), reduction=reduction,
                               pos_weight=torch.tensor(pos)), probs),
    ]  # fmt: skip
    for ours, theirs, target in cases:
        _loss_both(ours, theirs, y, target)


def test_bce_with_logits_target_gradient_with_pos_weight_matches_torch():
    rng = _rng(3)
    s, t, pos = rng.standard_normal((5, 3)), rng.uniform(0, 1, (5, 3)), rng.uniform(0.5, 3, 3)
    gs, gt = gg.tensor(s, requires_grad=True), gg.tensor(t, requires_grad=True)
    ts, tt = torch.tensor(s, requires_grad=True), torch.tensor(t, requires_grad=True)
    F.binary_cross_entropy_with_logits(gs, gt, pos_weight=gg.tensor(pos)).backward()
    torch.nn.functional.binary_cross_entropy_with_logits(
        ts, tt, pos_weight=torch.tensor(pos)
    ).backward()
    np.testing.assert_allclose(gt.grad.numpy(), tt.grad.numpy(), **TOL)
    np.testing.assert_allclose(gs.grad.numpy(), ts.grad.numpy(), **TOL)


@pytest.mark.parametrize("p, margin", [(1, 1.0), (2, 0.5)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_multi_margin_loss_module_with_weight_matches_torch(p, margin, reduction):
    x, t = _scores_and_labels(4, ignored=False)
    ours = nn.MultiMarginLoss(p, margin, gg.tensor(WEIGHTS), reduction)
    theirs = tnn.MultiMarginLoss(p, margin, torch.tensor(WEIGHTS), reduction=reduction)
    _loss_both(ours, theirs, x, t)


def test_functional_forms_match_their_modules():
    x, t = _scores_and_labels(5)
    w = gg.tensor(WEIGHTS)
    a = F.cross_entropy(gg.tensor(x), gg.tensor(t), weight=w, label_smoothing=0.1)
    b = nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)(gg.tensor(x), gg.tensor(t))
    assert a.item() == b.item()
    y = gg.tensor(x)
    assert F.huber_loss(y, y * 0.5).item() == nn.HuberLoss()(y, y * 0.5).item()


def test_loss_argument_errors_name_the_fix():
    x, t = _scores_and_labels(6)
    with pytest.raises(ValueError, match="pass class weights by keyword"):
        F.cross_entropy(gg.tensor(x), gg.tensor(t), gg.tensor(WEIGHTS))
    with pytest.raises(ValueError, match=r"weight must have shape \(5,\)"):
        F.cross_entropy(gg.tensor(x), gg.tensor(t), weight=gg.ones(4))
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        F.cross_entropy(gg.tensor(x), gg.tensor(t), label_smoothing=1.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        F.binary_cross_entropy_with_logits(gg.ones((4, 3)), gg.ones((4, 3)), pos_weight=gg.ones(2))
    with pytest.raises(ValueError, match="delta must be > 0"):
        F.huber_loss(gg.ones(3), gg.ones(3), delta=0.0)
    with pytest.raises(ValueError, match="reduction must be 'mean'"):
        nn.L1Loss("average")
