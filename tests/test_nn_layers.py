"""Layer semantics that need no oracle: module buffers, dropout, embedding's errors and
determinism, what bias_act keeps for backward, MLP's norm layers, LayerNorm's input checks."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import fused, nn

# ----------------------------------------------------------------------------- buffers


class _WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)
        self.register_buffer("scale", gg.ones(3))
        self.register_buffer("steps", gg.tensor(np.array(0, np.int64)))
        self.register_buffer("scratch", gg.zeros(3), persistent=False)
        self.register_buffer("later", None)


def test_buffers_are_state_but_not_parameters():
    m = _WithBuffers()
    assert [k for k, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]
    assert [k for k, _ in m.named_buffers()] == ["scale", "steps", "scratch"]
    assert list(m.state_dict()) == ["scale", "steps", "lin.weight", "lin.bias"]
    assert m.later is None and m.scale.shape == (3,)
    m.scale = gg.full(3, 2.0)  # assigning to a buffer name replaces the buffer
    assert m.state_dict()["scale"].tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(TypeError, match="must be a Tensor or None"):
        m.register_buffer("bad", np.ones(2))
    with pytest.raises(KeyError, match="already a parameter"):
        m.lin.register_buffer("weight", gg.ones(1))


def test_to_casts_float_buffers_and_keeps_counters_integer():
    m = _WithBuffers().to(gg.float64)
    assert m.scale.dtype == np.float64 and m.lin.weight.dtype == np.float64
    assert m.steps.dtype == np.int64


def test_load_state_dict_writes_buffers_and_checks_them():
    m, other = _WithBuffers(), _WithBuffers()
    m.scale.data[...] = 5.0
    m.steps.data[...] = 7
    other.load_state_dict(m.state_dict())
    assert other.scale.tolist() == [5.0] * 3 and other.steps.item() == 7
    state = m.state_dict()
    del state["steps"]
    with pytest.raises(RuntimeError, match="missing key.*'steps'"):
        other.load_state_dict(state)
    state = m.state_dict()
    state["scale"] = np.ones(4)
    with pytest.raises(RuntimeError, match="size mismatch for 'scale'.*buffer has shape"):
        other.load_state_dict(state)


# ----------------------------------------------------------------------------- dropout


def test_dropout_scales_the_kept_elements_and_is_seeded():
    x = gg.ones((200, 50), requires_grad=True)
    gg.manual_seed(3)
    y = F.dropout(x, 0.25)
    kept = y.numpy() != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.75)
    gg.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.25).numpy(), y.numpy())
    assert F.dropout(x, 0.25, training=False) is x
    assert not F.dropout(x, 1.0).numpy().any()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        F.dropout(x, 1.5)


# ----------------------------------------------------------------------------- embedding


def test_embedding_errors_name_the_problem():
    w = gg.randn(4, 3, requires_grad=True)
    with pytest.raises(IndexError, match="index 4 is out of range for a table of 4 rows"):
        F.embedding(gg.tensor([0, 4]), w)
    with pytest.raises(IndexError, match="index -1 is out of range"):
        F.embedding(gg.tensor([-1, 0]), w)
    with pytest.raises(TypeError, match="indices must be integers"):
        F.embedding(gg.tensor([0.0, 1.0]), w)
    with pytest.raises(ValueError, match="padding_idx 4 is out of range"):
        nn.Embedding(4, 3, padding_idx=4)


def test_embedding_gradient_adds_repeats_and_is_deterministic_on_the_cpu():
    w = gg.tensor(np.arange(12.0).reshape(4, 3), requires_grad=True)
    ids = gg.tensor([[1, 1, 3], [1, 0, 3]])
    gg.config.deterministic = True
    try:
        F.embedding(ids, w).sum().backward()
    finally:
        gg.config.deterministic = False
    assert w.grad.numpy()[:, 0].tolist() == [1.0, 3.0, 0.0, 2.0]


def test_embedding_second_derivative_through_a_scatter_add():
    w = gg.randn(5, 2, dtype=gg.float64, requires_grad=True)
    ids = gg.tensor([0, 3, 3, 1])
    assert gg.gradgradcheck(lambda w: (F.embedding(ids, w) ** 3).sum(), [w])


# ----------------------------------------------------------------------------- bias_act saves


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "identity"])
def test_bias_act_keeps_only_the_output_for_output_derivative_activations(activation):
    z = gg.randn(4, 3, requires_grad=True)
    b = gg.randn(3, requires_grad=True)
    node = fused.bias_act(z, b, activation=activation).grad_fn
    saved = dict(zip(fused.bias_act.saves, node.saved, strict=True))
    assert saved["z"] is None and saved["b"] is None


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "silu"])
def test_bias_act_keeps_its_inputs_for_gelu_and_silu_and_sees_in_place_changes(activation):
    z = gg.randn(4, 3, requires_grad=True) * 1.0  # a non-leaf, so it may change in place
    b = gg.randn(3, requires_grad=True)
    out = fused.bias_act(z, b, activation=activation)
    saved = dict(zip(fused.bias_act.saves, out.grad_fn.saved, strict=True))
    assert saved["z"] is z.data and saved["b"] is b.data  # references, not copies
    z += 1.0
    with pytest.raises(RuntimeError, match="modified in place"):
        out.sum().backward()


# ----------------------------------------------------------------------------- MLP


def test_mlp_norm_layers_sit_between_linear_and_activation():
    names = [type(m).__name__ for m in nn.MLP([4, 8, 8, 2], activation="silu", norm="batch",
                                                dropout=0.1)]  # fmt: skip
    assert names == ["Linear", "BatchNorm1d", "SiLU", "Dropout", "Linear", "BatchNorm1d", "SiLU",
                     "Dropout", "Linear"]  # fmt: skip
    model = nn.MLP([4, 8, 2], norm="layer", dtype=gg.float64)
    assert model[1].weight.dtype == np.float64
    y = model(gg.randn(5, 4, dtype=gg.float64))
    assert y.shape == (5, 2)


def test_every_hidden_activation_builds_an_mlp():
    from gpugrad import activations

    for name in activations.HIDDEN:
        assert nn.MLP([3, 4, 2], activation=name)(gg.randn(2, 3)).shape == (2, 2)


def test_gelu_layer_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("erf")
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh'"):
        F.gelu(gg.ones(2), approximate="fast")


# ----------------------------------------------------------------------------- layer_norm


def test_layer_norm_rejects_shapes_that_are_not_trailing_dims():
    with pytest.raises(ValueError, match="must be the trailing dims"):
        F.layer_norm(gg.ones((3, 4)), (3,))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\)"):
        F.layer_norm(gg.ones((3, 4)), 4, weight=gg.ones(3))


def test_layer_norm_float16_computes_in_float32():
    x = gg.tensor((np.random.default_rng(0).standard_normal((4, 64)) * 300).astype(np.float16))
    y = F.layer_norm(x, 64)
    assert y.dtype == np.float16
    assert np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(y.numpy().astype(np.float64).std(axis=1), 1.0, rtol=1e-2)
