"""PyTorch's spellings: dim=/keepdim= wherever axis=/keepdims= is taken, the renames of
gpugrad/aliases.py, the PyTorch conveniences of Tensor and Module, the errors that name the
gpugrad spelling, and the README's "PyTorch → gpugrad" table against the alias table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F
from gpugrad import aliases, nn, optim

ROOT = Path(__file__).resolve().parents[1]


def _x(shape=(2, 3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return gg.tensor(rng.standard_normal(shape), requires_grad=True)


# ----------------------------------------------------------------------------- dim= / keepdim=

REDUCTIONS = ["sum", "mean", "max", "min", "argmax", "argmin", "all", "any"]


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("dim", [0, -1, 1])
def test_dim_and_keepdim_equal_axis_and_keepdims(name, dim):
    x = _x()
    theirs = getattr(x, name)(dim=dim, keepdim=True)
    ours = getattr(x, name)(axis=dim, keepdims=True)
    if name in ("max", "min"):
        theirs = theirs.values
    np.testing.assert_array_equal(theirs.numpy(), ours.numpy())
    mixed = getattr(x, name)(keepdim=True, axis=dim)  # keepdim= alone is PyTorch's spelling too
    assert (mixed.values if name in ("max", "min") else mixed).shape == ours.shape


def test_dim_everywhere_else():
    x = _x()
    for fn in (F.softmax, F.log_softmax):
        np.testing.assert_array_equal(fn(x, dim=1).numpy(), fn(x, axis=1).numpy())
    parts = [x, x * 2]
    for fn in (gg.concatenate, gg.cat, gg.concat, gg.stack):
        np.testing.assert_array_equal(fn(parts, dim=2).numpy(), fn(parts, axis=2).numpy())
    for fn in (gg.sum, gg.mean):
        np.testing.assert_array_equal(fn(x, dim=(0, 2)).numpy(), fn(x, axis=(0, 2)).numpy())
    assert x.unsqueeze(dim=1).shape == gg.unsqueeze(x, dim=1).shape == (2, 1, 3, 4)
    assert x.expand_dims(dim=0).shape == gg.expand_dims(x, dim=0).shape == (1, 2, 3, 4)
    assert gg.squeeze(x.unsqueeze(1), dim=1).shape == (2, 3, 4)


def test_giving_both_spellings_is_an_error_that_names_them():
    x = _x()
    with pytest.raises(TypeError, match=r"Tensor.sum\(\) got both axis= and dim="):
        x.sum(1, dim=1)
    with pytest.raises(TypeError, match="both keepdims= and keepdim="):
        x.mean(keepdims=True, keepdim=True)
    with pytest.raises(TypeError, match=r"softmax\(\) got both axis= and dim="):
        F.softmax(x, 1, dim=1)
    with pytest.raises(TypeError, match=r"concatenate\(\) got both axis= and dim="):
        gg.cat([x, x], 0, dim=0)


def test_pytorch_spellings_get_pytorchs_behaviour():
    torch = pytest.importorskip("torch")
    x = _x()
    t = torch.tensor(x.numpy())
    values, indices = x.max(dim=1)
    expected = t.max(dim=1)
    np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
    np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())
    low = x.min(dim=2, keepdim=True)
    np.testing.assert_array_equal(low.indices.numpy(), t.min(dim=2, keepdim=True).indices.numpy())
    assert not isinstance(x.max(axis=1), tuple) and not isinstance(x.max(1), tuple)
    # var: unbiased under dim=, as torch; NumPy's ddof=0 under axis=
    np.testing.assert_allclose(x.var(dim=1).numpy(), t.var(dim=1).numpy(), rtol=1e-13)
    np.testing.assert_allclose(x.var(axis=1).numpy(), t.var(dim=1, correction=0).numpy())
    np.testing.assert_allclose(x.var(correction=0).numpy(), t.var(correction=0).numpy())
    np.testing.assert_allclose(x.var(unbiased=True).numpy(), t.var().numpy(), rtol=1e-13)
    with pytest.raises(TypeError, match="one of ddof=, correction= and unbiased="):
        x.var(ddof=1, correction=1)
    # squeeze(dim=) leaves a dimension that is not 1, as torch; NumPy's squeeze raises
    assert x.squeeze(dim=0).shape == tuple(t.squeeze(dim=0).shape) == (2, 3, 4)
    with pytest.raises(ValueError):
        x.squeeze(0)
    # the gradient flows through max(dim=).values as through max(axis=)
    values.sum().backward()
    assert x.grad.numpy().sum() == 2 * 4


# ----------------------------------------------------------------------------- renames, methods


def test_every_alias_is_the_method_or_object_it_names():
    for theirs, ours in aliases.TENSOR_METHODS.items():
        assert getattr(gg.Tensor, theirs) is getattr(gg.Tensor, ours), theirs
    for theirs, ours in aliases.FUNCTIONS.items():
        assert getattr(gg, theirs) is getattr(gg, ours), theirs
    x = _x()
    assert x.view(6, 4).shape == (6, 4) and x.permute(2, 0, 1).shape == (4, 2, 3)
    np.testing.assert_array_equal(x.pow(2).numpy(), (x**2).numpy())
    assert gg.double == gg.float64 and gg.long == gg.int64 and gg.half == gg.float16


def test_tensor_conveniences_against_pytorch():
    torch = pytest.importorskip("torch")
    x = _x()
    t = torch.tensor(x.numpy())
    assert x.numel() == t.numel() == x.size and x.dim() == t.dim() == x.ndim
    for name in ("float", "double", "half", "long", "int", "bool"):
        ours, theirs = getattr(x, name)(), getattr(t, name)()
        assert ours.dtype.name == str(theirs.dtype).removeprefix("torch.")
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    m = _x((3, 5))
    np.testing.assert_array_equal(m.t().numpy(), torch.tensor(m.numpy()).t().numpy())
    assert _x((4,)).t().shape == (4,)
    for args in ((), (1,), (0, 1), (1, 2)):
        assert x.flatten(*args).shape == tuple(t.flatten(*args).shape)
    assert gg.tensor(3.0).flatten().shape == (1,)
    with pytest.raises(ValueError, match="start_dim 2 comes after end_dim 1"):
        x.flatten(2, 1)
    np.testing.assert_array_equal(x.swapaxes(0, 2).numpy(), t.transpose(0, 2).numpy())
    np.testing.assert_array_equal(x.swapdims(0, 2).numpy(), t.swapdims(0, 2).numpy())
    assert bool((x > -10).all()) and not bool((x > 10).any())
    np.testing.assert_array_equal((x > 0).any(dim=2).numpy(), (t > 0).any(dim=2).numpy())
    # float() keeps the graph for a tensor that requires grad
    x.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == np.float64


def test_requires_grad_and_to_spellings():
    x = gg.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    assert not x.requires_grad_(False).requires_grad
    assert x.to("float64").dtype == np.float64 and x.to(dtype="int64").dtype == np.int64
    assert x.to(device="cpu", dtype=gg.float64).dtype == np.float64
    assert x.to(gg.tensor(np.zeros(1, np.float64))).dtype == np.float64
    for word, right in (("float", "float32"), ("double", "float64"), ("long", "int64")):
        with pytest.raises(ValueError, match=f"dtype '{word}' is ambiguous.*'{right}'"):
            x.to(word)
    with pytest.raises(TypeError, match="got the device twice"):
        x.to("cpu", device="cpu")


def test_size_stays_numpys_int_and_calling_it_says_shape():
    x = gg.zeros(3, 4)
    assert x.size == 12 and isinstance(x.size, int) and json.dumps(x.size) == "12"
    assert np.zeros(x.size).shape == (12,) and x.size + 1 == 13
    with pytest.raises(TypeError, match=r"x.size is the number of elements.*x\.shape\[0\]"):
        x.size(0)
    with pytest.raises(TypeError, match=r"x\.shape\[1\] for the length of dimension 1"):
        x.size(dim=1)
    with pytest.raises(TypeError, match=r"Write x\.shape for the dimensions"):
        x.size()


def test_micrograd_update_idiom_works_and_other_ufuncs_say_what_to_use():
    p = gg.tensor([1.0, 2.0], requires_grad=True)
    (p * p).sum().backward()
    p.data -= 0.1 * p.grad  # the raw array, the tensor's values
    np.testing.assert_allclose(p.numpy(), [0.8, 1.6], rtol=1e-6)
    p.data[...] = [1.0, 2.0]
    # ndarray <op> Tensor still runs the Tensor's op (and records it)
    out = np.ones(2, np.float32) * p
    assert isinstance(out, gg.Tensor) and out.grad_fn is not None
    assert (np.array([0.0, 5.0]) < p).tolist() == [True, False]
    assert isinstance(np.ones((2, 2), np.float32) @ p, gg.Tensor)
    with pytest.raises(TypeError, match="NumPy's exp .*cannot take a gpugrad Tensor.*x.exp"):
        np.exp(p)


def test_from_numpy_shares_memory():
    a = np.arange(3.0)
    t = gg.from_numpy(a)
    a[1] = 7.0
    t.data[2] = 9.0
    assert t.tolist() == [0.0, 7.0, 9.0] and a[2] == 9.0 and t.dtype == np.float64
    with pytest.raises(TypeError, match="expected a numpy.ndarray, got list"):
        gg.from_numpy([1.0])


def test_set_grad_enabled_as_a_call_a_context_and_a_decorator():
    x = gg.tensor([1.0], requires_grad=True)
    try:
        gg.set_grad_enabled(False)
        assert not gg.is_grad_enabled() and (x * 2).grad_fn is None
    finally:
        gg.set_grad_enabled(True)
    with gg.set_grad_enabled(False):
        assert not gg.is_grad_enabled()
    assert gg.is_grad_enabled()

    @gg.set_grad_enabled(False)
    def frozen():
        return gg.is_grad_enabled()

    assert gg.is_grad_enabled() and frozen() is False and gg.is_grad_enabled()


def test_pytorch_names_gpugrad_spells_differently_raise_with_the_spelling():
    x = _x()
    with pytest.raises(AttributeError, match=r"'zero_'; in gpugrad write x.data\[...\] = 0"):
        x.zero_()
    with pytest.raises(AttributeError, match=r"'expand'; in gpugrad write x.broadcast_to"):
        x.expand(2, 3, 4)
    with pytest.raises(AttributeError, match="'masked_fill'.*gg.where"):
        x.masked_fill(x > 0, 0.0)
    with pytest.raises(AttributeError, match="'sume'; did you mean 'sum'"):
        x.sume()
    with pytest.raises(AttributeError, match="'float'; in gpugrad write gg.float32"):
        gg.float  # noqa: B018
    with pytest.raises(AttributeError, match="'tensr'; did you mean 'tensor'"):
        gg.tensr  # noqa: B018
    assert not hasattr(x, "_not_there") and not hasattr(gg, "_nope")
    with pytest.raises(ValueError, match=r"to swap two as PyTorch's x.transpose\(0, 2\)"):
        x.transpose(0, 2)


# ----------------------------------------------------------------------------- Module methods


def test_module_apply_visits_children_first_then_self():
    model = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.ReLU(), nn.Linear(3, 1)))
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen == ["Linear", "ReLU", "Linear", "Sequential", "Sequential"]


def test_module_dtype_device_and_freezing():
    model = nn.MLP([2, 4, 1])
    opt = optim.SGD(model.parameters(), lr=0.1)
    assert model.double() is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert all(p.dtype == np.float32 for p in model.float().parameters())
    assert model.to("float64").cpu() is model and model[0].weight.dtype == np.float64
    assert model.to(device="cpu", dtype="float32")[0].weight.dtype == np.float32
    assert all(p.dtype == np.float16 for p in nn.Linear(2, 2).half().parameters())
    frozen = model.requires_grad_(False)
    assert frozen is model and not any(p.requires_grad for p in model.parameters())
    assert model.num_parameters(trainable_only=True) == 0
    model[0].requires_grad_(True)  # unfreeze the first layer only
    before = model[-1].weight.numpy().copy()
    model(gg.ones((3, 2))).sum().backward()
    assert model[-1].weight.grad is None
    opt.step()
    np.testing.assert_array_equal(model[-1].weight.numpy(), before)
    with pytest.raises(TypeError, match="must stay floating point"):
        model.to("int64")


# ----------------------------------------------------------------------------- the README table


def _readme_table():
    text = (ROOT / "README.md").read_text()
    start = text.index("### PyTorch → gpugrad")
    rows = [line for line in text[start:].splitlines()[1:] if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in rows[2:]]


def test_the_readme_table_lists_every_alias():
    table = _readme_table()
    pytorch = " ".join(row[0] for row in table)
    gpugrad = " ".join(row[1] for row in table)
    for name in aliases.TENSOR_METHODS:
        assert re.search(rf"\.{name}\(", pytorch), f"x.{name}() is missing from the README table"
    for name in aliases.FUNCTIONS:
        assert re.search(rf"torch\.{name}\b", pytorch), f"torch.{name} missing from the table"
        assert re.search(rf"gg\.{name}\b", gpugrad), f"gg.{name} missing from the table"
    for name in ("dim=", "size(0)", "p.data -= lr * p.grad", "clip_grad_norm_", "OneCycleLR"):
        assert name in pytorch, name
