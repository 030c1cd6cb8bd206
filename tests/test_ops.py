"""Every op of the table, checked the same way: forward against NumPy, backward against
finite differences in float64, dtypes and shapes preserved, inputs never mutated."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, tol
from opinfo import NOT_SAMPLED_HERE, OP_INFOS

import gpugrad as gg

CASES = [
    pytest.param(info, shapes, id=f"{info.name}{('[' + info.note + ']') if info.note else ''}-{k}")
    for info in OP_INFOS
    for k, shapes in enumerate(info.shapes)
]


def _tensors(info, arrays, device, requires_grad):
    return [
        gg.tensor(
            a,
            device=device,
            requires_grad=requires_grad and i not in info.nondiff and a.dtype.kind == "f",
        )
        for i, a in enumerate(arrays)
    ]


def test_every_op_in_the_table_has_samples():
    covered = {info.name for info in OP_INFOS} | set(NOT_SAMPLED_HERE)
    missing = sorted(set(gg.OPS) - covered)
    assert not missing, f"ops without an entry in tests/opinfo.py: {missing}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("info, shapes", CASES)
def test_forward_matches_numpy_reference(info, shapes, dtype, device):
    rng = np.random.default_rng(0)
    arrays = info.make_inputs(rng, shapes, dtype)
    out = info.fn(*_tensors(info, arrays, device, requires_grad=False))
    expected = np.asarray(info.ref(*arrays))
    if info.keeps_dtype:
        assert out.dtype == dtype, f"{info.name}: {dtype.__name__} in, {out.dtype} out"
    assert_close(out, expected, **tol(out.dtype), what=f"{info.name} forward")


@pytest.mark.parametrize("info, shapes", CASES)
def test_grad_matches_finite_differences(info, shapes):
    rng = np.random.default_rng(1)
    arrays = info.make_inputs(rng, shapes, np.float64)
    inputs = _tensors(info, arrays, "cpu", requires_grad=True)
    if not info.finite_differences:
        pytest.skip(f"{info.name}: checked by a dedicated test instead")
    assert gg.gradcheck(info.fn, inputs)


@pytest.mark.parametrize("info, shapes", CASES)
def test_grads_have_input_shapes_and_dtypes_and_inputs_stay_unchanged(info, shapes, device):
    rng = np.random.default_rng(2)
    arrays = info.make_inputs(rng, shapes, np.float32)
    copies = [a.copy() for a in arrays]
    inputs = _tensors(info, arrays, device, requires_grad=True)
    out = info.fn(*inputs)
    out.sum().backward() if out.size else out.backward(np.zeros(out.shape, out.dtype))
    for i, (t, a, c) in enumerate(zip(inputs, arrays, copies, strict=True)):
        np.testing.assert_array_equal(a, c, err_msg=f"{info.name} changed input {i}")
        if t.requires_grad:
            assert t.grad is not None, f"{info.name}: input {i} got no gradient"
            assert t.grad.shape == t.shape and t.grad.dtype == t.dtype, info.name
