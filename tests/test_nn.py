"""nn: registration, names, state dicts, summary, layers, and the fused bias + activation op."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import activations, fused, nn

ACTIVATIONS = activations.NAMES

# Fast path vs reference: float32 differs by summation order in the bias gradient (float64
# accumulation in Numba, pairwise float32 in NumPy) over up to 64 rows: a few ulps of the sum.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(np.ones(4, np.float32))
        self.note = "not a parameter"
        self.frozen = gg.ones(4)  # no requires_grad: stays a plain attribute

    def forward(self, x):
        return self.fc(x) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x):
        return self.head(self.block(x))


# ----------------------------------------------------------------------------- Module


def test_registration_finds_parameters_and_children_by_assignment():
    b = Block()
    assert list(b._parameters) == ["scale"]
    assert list(b._modules) == ["fc"]
    assert b.note == "not a parameter" and "frozen" not in b._parameters
    assert [type(c).__name__ for c in b.children()] == ["Linear"]
    b.fc = None  # reassigning removes the child
    assert list(b._modules) == [] and b.fc is None


def test_named_parameters_use_pytorch_key_names():
    names = [k for k, _ in Net().named_parameters()]
    assert names == [
        "block.scale",
        "block.fc.weight",
        "block.fc.bias",
        "head.1.weight",
        "head.1.bias",
    ]
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_shared_parameters_and_modules_are_listed_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, lin)
    assert len(list(seq.parameters())) == 2
    assert len(list(seq.modules())) == 2  # the Sequential and the one Linear


def test_modules_train_eval_and_zero_grad():
    net = Net()
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(gg.ones((2, 3))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_num_parameters_counts_weights_and_biases():
    assert nn.Linear(3, 4).num_parameters() == 4 * 3 + 4
    assert nn.Linear(3, 4, bias=False).num_parameters() == 12
    assert nn.MLP([64, 128, 10]).num_parameters() == 64 * 128 + 128 + 128 * 10 + 10


def test_repr_looks_like_pytorch():
    text = repr(nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Dropout(0.1)))
    assert text == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (1): LeakyReLU(negative_slope=0.2)\n"
        "  (2): Dropout(p=0.1)\n"
        ")"
    )


def test_to_casts_parameters_in_place_and_keeps_identity():
    lin = nn.Linear(3, 2)
    w = lin.weight
    before = w.numpy().copy()
    assert lin.to(gg.float64) is lin
    assert lin.weight is w and w.dtype == np.float64 and lin.bias.dtype == np.float64
    np.testing.assert_array_equal(w.numpy(), before.astype(np.float64))
    assert lin(gg.ones((1, 3), dtype=gg.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="floating point"):
        lin.to(gg.int32)


def test_module_without_super_init_says_so():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Broken()


# ----------------------------------------------------------------------------- state dicts


def test_state_dict_round_trip_restores_outputs():
    gg.manual_seed(1)
    a, b = Net(), Net()
    x = gg.randn(5, 3)
    sd = a.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    sd["block.fc.bias"] += 0  # a copy: editing it must not touch the model
    sd["block.scale"][0] = 7.0
    assert a.block.scale.numpy()[0] == 1.0
    result = b.load_state_dict(a.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_accepts_tensors_and_writes_in_place():
    lin = nn.Linear(2, 2)
    w = lin.weight
    alias = w.data
    version = w._version[0]
    lin.load_state_dict({"weight": gg.ones((2, 2)), "bias": np.zeros(2)})
    assert lin.weight is w and alias[0, 0] == 1.0 and w._version[0] > version


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("0.bias"), "missing key.*'0.bias'"),
        (lambda sd: sd.update(extra=np.zeros(1)), "unexpected key.*'extra'"),
        (
            lambda sd: sd.update({"2.weight": np.zeros((5, 5))}),
            r"size mismatch for '2.weight'.*\(5, 5\)",
        ),
    ],
)
def test_load_state_dict_errors_name_the_key_and_change_nothing(edit, message):
    net = nn.MLP([3, 4, 2])
    before = net.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    edit(bad)
    with pytest.raises(RuntimeError, match=message):
        net.load_state_dict(bad)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict_reports_instead_of_raising():
    net = nn.MLP([3, 4, 2])
    sd = net.state_dict()
    sd.pop("2.bias")
    sd["extra"] = np.zeros(1)
    sd["0.weight"] = np.full((4, 3), 0.5)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["extra"]
    assert (net[0].weight.numpy() == 0.5).all()
    sd["0.bias"] = np.zeros(7)  # shape mismatches raise even when not strict
    with pytest.raises(RuntimeError, match="size mismatch for '0.bias'"):
        net.load_state_dict(sd, strict=False)


# ----------------------------------------------------------------------------- summary


def test_summary_prints_layers_shapes_and_parameter_counts(capsys):
    nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).summary((5, 3))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.split() == ["0", "(Linear)", "(5,", "4)", "16"] for line in lines), out
    assert any(line.split() == ["1", "(ReLU)", "(5,", "4)", "0"] for line in lines), out
    assert any(line.split() == ["2", "(Linear)", "(5,", "2)", "10"] for line in lines), out
    assert "Total params: 26" in out and "Trainable params: 26" in out


def test_summary_of_a_nested_model_uses_dotted_names(capsys):
    Net().summary((1, 3))
    out = capsys.readouterr().out
    assert "block.fc (Linear)" in out and "head.1 (Linear)" in out
    assert f"Total params: {Net().num_parameters()}" in out


# ----------------------------------------------------------------------------- layers


def test_linear_init_is_bounded_and_reproducible():
    gg.manual_seed(123)
    a = nn.Linear(50, 40)
    gg.manual_seed(123)
    b = nn.Linear(50, 40)
    c = nn.Linear(50, 40)
    bound = 1 / math.sqrt(50)
    for p in (a.weight, a.bias):
        v = p.numpy()
        assert v.dtype == np.float32 and np.abs(v).max() <= bound
        assert np.abs(v).max() > 0.9 * bound  # really spread over the range, not near zero
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())
    assert not np.array_equal(a.weight.numpy(), c.weight.numpy())
    assert a.weight.shape == (40, 50) and a.weight.requires_grad and a.weight.is_leaf


def test_linear_matches_its_formula():
    lin = nn.Linear(3, 2, dtype=gg.float64)
    x = np.random.default_rng(0).standard_normal((4, 3))
    expected = x @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(lin(gg.tensor(x)).numpy(), expected, rtol=1e-12)


def test_dropout_scales_in_training_and_is_identity_in_eval():
    gg.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = gg.ones((200, 100))
    y = drop(x).numpy()
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        nn.Dropout(1.5)


def test_dropout_gradient_follows_the_mask():
    gg.manual_seed(3)
    x = gg.ones((10, 10), requires_grad=True)
    y = nn.Dropout(0.5)(x)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())


def test_flatten_and_identity():
    x = gg.zeros((2, 3, 4, 5))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert nn.Identity()(x) is x


def test_sequential_indexing_and_iteration():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and list(seq) == layers and seq[-1] is layers[2]
    assert list(seq[:2]) == layers[:2]
    with pytest.raises(IndexError, match="out of range"):
        seq[3]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_fused_forward_and_grads_match_unfused_layers(activation):
    gg.manual_seed(5)
    mlp = nn.MLP([6, 8, 7, 3], activation=activation, dtype=gg.float64)
    assert [type(m).__name__ for m in mlp][:2] == ["Linear", type(mlp[1]).__name__]
    assert len(mlp) == 5
    x = gg.randn(9, 6, dtype=gg.float64)
    mlp(x).sum().backward()
    fused_grads = [p.grad.numpy().copy() for p in mlp.parameters()]
    out = mlp(x).numpy()
    mlp.zero_grad()
    h = x
    for layer in mlp:  # calling the layers one by one takes the unfused path
        h = layer(h)
    np.testing.assert_allclose(out, h.numpy(), rtol=1e-12, atol=1e-12)
    h.sum().backward()
    for a, p in zip(fused_grads, mlp.parameters(), strict=True):
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_sequential_fuses_linear_and_activation_into_bias_act():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.LeakyReLU(-0.5))
    y = net[:2](gg.ones((2, 3), requires_grad=True))
    assert y.grad_fn.name == "bias_act"
    z = net(gg.ones((2, 3), requires_grad=True))
    assert z.grad_fn.name == "leaky_relu"  # a negative slope is not fusable: ran unfused


# ----------------------------------------------------------------------------- bias_act


def _unfused(z, b, activation, slope=0.01):
    y = z + b
    return {
        "relu": lambda: y.relu(),
        "leaky_relu": lambda: y.leaky_relu(slope),
        "tanh": lambda: y.tanh(),
        "sigmoid": lambda: y.sigmoid(),
        "gelu": lambda: F.gelu(y),
        "gelu_tanh": lambda: F.gelu(y, approximate="tanh"),
        "silu": lambda: F.silu(y),
        "identity": lambda: y,
    }[activation]()


def _inputs(dtype, shape=(16, 5), seed=0):
    rng = np.random.default_rng(seed)
    z = gg.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
    b = gg.tensor(rng.standard_normal(shape[-1]).astype(dtype), requires_grad=True)
    return z, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_act_fused_matches_composed(activation, dtype):
    z, b = _inputs(dtype)
    z2, b2 = _inputs(dtype)
    w = np.random.default_rng(1).standard_normal(z.shape).astype(dtype)
    out = fused.bias_act(z, b, activation=activation, negative_slope=0.1)
    ref = _unfused(z2, b2, activation, 0.1)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), ref.numpy(), **TOL[dtype])
    (out * w).sum().backward()
    (ref * w).sum().backward()
    assert z.grad.dtype == dtype and b.grad.shape == b.shape
    np.testing.assert_allclose(z.grad.numpy(), z2.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(b.grad.numpy(), b2.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_act_passes_gradcheck(activation):
    z, b = _inputs(np.float64, shape=(2, 3, 4), seed=2)  # 3-D: the bias sums over two axes
    fn = lambda z, b: fused.bias_act(z, b, activation=activation, negative_slope=0.2)  # noqa: E731
    assert gg.gradcheck(fn, [z, b])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bias_act_numba_path_matches_numpy_reference(activation, dtype, kernels):
    results = []
    for on in (True, False):
        kernels(on)
        z, b = _inputs(dtype, shape=(64, 33), seed=4)
        out = fused.bias_act(z, b, activation=activation, negative_slope=0.05)
        (out * out).sum().backward()
        results.append((out.numpy(), z.grad.numpy(), b.grad.numpy()))
    for fast, ref in zip(*results, strict=True):
        np.testing.assert_allclose(fast, ref, **TOL[dtype])


def test_bias_act_relu_gradient_at_zero_is_zero_like_ops_relu():
    z = gg.tensor([[-1.0, 0.0, 2.0]], requires_grad=True)
    b = gg.zeros(3, requires_grad=True)
    fused.bias_act(z, b, activation="relu", negative_slope=0.0).sum().backward()
    assert z.grad.tolist() == [[0.0, 0.0, 1.0]] and b.grad.tolist() == [0.0, 0.0, 1.0]


def test_bias_act_sigmoid_is_finite_for_huge_inputs():
    z = gg.tensor([[-1e4, 1e4]], dtype=gg.float32)
    out = fused.bias_act(z, gg.zeros(2), activation="sigmoid", negative_slope=0.0)
    assert out.tolist() == [[0.0, 1.0]]


def test_bias_act_rejects_unknown_activation_and_negative_slope():
    z, b = _inputs(np.float32)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        fused.bias_act(z, b, activation="swish", negative_slope=0.0)
    with pytest.raises(ValueError, match="negative_slope must be >= 0"):
        fused.bias_act(z, b, activation="leaky_relu", negative_slope=-0.1)


def test_linear_act_matches_linear_then_activation():
    gg.manual_seed(2)
    x = gg.randn(4, 3, dtype=gg.float64)
    w = gg.randn(5, 3, dtype=gg.float64)
    b = gg.randn(5, dtype=gg.float64)
    out = nn.linear_act(x, w, b, "tanh")
    np.testing.assert_allclose(out.numpy(), np.tanh(x.numpy() @ w.numpy().T + b.numpy()))
    np.testing.assert_allclose(
        nn.linear_act(x, w, None, "relu").numpy(), np.maximum(x.numpy() @ w.numpy().T, 0)
    )
    with pytest.raises(ValueError, match="bias"):
        nn.linear_act(x, w, gg.zeros(4, dtype=gg.float64))
