"""Every op of the table, checked the same way over the samples of ``opinfo.py``: forward
against NumPy, backward against finite differences in float64 (random directions for large
inputs), dtypes and shapes preserved, inputs never mutated, strided and transposed inputs equal
to contiguous ones, documented subgradients at kinks, fused ops equal to their composition, and
CPU equal to GPU where there is one."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, tol
from opinfo import LAYOUTS, NOT_SAMPLED_HERE, OP_INFOS, relayout

import gpugrad as gg


def _id(info, k):
    return f"{info.name}{('[' + info.note + ']') if info.note else ''}-{k}"


CASES = [
    pytest.param(info, shapes, id=_id(info, k))
    for info in OP_INFOS
    for k, shapes in enumerate(info.shapes)
]
LARGE = [
    pytest.param(info, shapes, id=_id(info, f"large{k}"))
    for info in OP_INFOS
    for k, shapes in enumerate(info.large)
]
KINKS = [pytest.param(info, id=_id(info, "kink")) for info in OP_INFOS if info.kink]
FUSED = [
    pytest.param(info, shapes, id=_id(info, k))
    for info in OP_INFOS
    if info.composed is not None
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


def _backward(out, seed=3):
    """Backward with a random cotangent, so every output element's gradient path counts."""
    v = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(v)


def _grads(info, arrays, device, seed=3):
    inputs = _tensors(info, arrays, device, requires_grad=True)
    out = info.fn(*inputs)
    _backward(out, seed)
    return out, [None if t.grad is None else t.grad.numpy() for t in inputs]


def test_every_op_in_the_table_has_samples():
    covered = {info.name for info in OP_INFOS} | set(NOT_SAMPLED_HERE)
    missing = sorted(set(gg.OPS) - covered)
    assert not missing, f"ops without an entry in tests/opinfo.py: {missing}"


def test_the_samples_cover_0d_empty_size1_and_broadcast_shapes():
    shapes = [s for info in OP_INFOS for sample in info.shapes for s in sample]
    assert () in shapes, "no 0-d sample"
    assert any(0 in s for s in shapes), "no size-0 sample"
    assert any(1 in s for s in shapes), "no size-1 dim"
    broadcast = [
        sample
        for info in OP_INFOS
        for sample in info.shapes
        if len(sample) > 1 and len({s for s in sample}) > 1 and info.name in ("add", "mul")
    ]
    assert broadcast, "no broadcasting sample"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("info, shapes", CASES)
def test_forward_matches_numpy_reference(info, shapes, dtype, device):
    rng = np.random.default_rng(0)
    arrays = info.make_inputs(rng, shapes, dtype)
    out = info.fn(*_tensors(info, arrays, device, requires_grad=False))
    expected = np.asarray(info.ref(*arrays))
    if info.keeps_dtype:
        assert out.dtype == dtype, f"{info.name}: {dtype.__name__} in, {out.dtype} out"
    assert_close(out, expected, **tol(out.dtype), what=f"{info.name} forward on {device}")


@pytest.mark.parametrize("info, shapes", CASES)
def test_grad_matches_finite_differences(info, shapes):
    rng = np.random.default_rng(1)
    arrays = info.make_inputs(rng, shapes, np.float64)
    inputs = _tensors(info, arrays, "cpu", requires_grad=True)
    if not info.finite_differences:
        pytest.skip(f"{info.name}: checked by a dedicated test instead")
    assert gg.gradcheck(info.fn, inputs)


@pytest.mark.parametrize("info, shapes", LARGE)
def test_grad_matches_random_directions_on_large_inputs(info, shapes):
    rng = np.random.default_rng(4)
    arrays = info.make_inputs(rng, shapes, np.float64)
    inputs = _tensors(info, arrays, "cpu", requires_grad=True)
    assert gg.gradcheck(info.fn, inputs, mode="random", n_directions=3)


@pytest.mark.parametrize("info, shapes", CASES)
def test_grads_have_input_shapes_and_dtypes_and_inputs_stay_unchanged(info, shapes, device):
    rng = np.random.default_rng(2)
    arrays = info.make_inputs(rng, shapes, np.float32)
    copies = [a.copy() for a in arrays]
    inputs = _tensors(info, arrays, device, requires_grad=True)
    before = [t._version[0] for t in inputs]
    out = info.fn(*inputs)
    out.sum().backward() if out.size else out.backward(np.zeros(out.shape, out.dtype))
    for i, (t, a, c) in enumerate(zip(inputs, arrays, copies, strict=True)):
        np.testing.assert_array_equal(a, c, err_msg=f"{info.name} changed input {i}")
        np.testing.assert_array_equal(t.numpy(), c, err_msg=f"{info.name} changed input {i}")
        assert t._version[0] == before[i], f"{info.name} bumped input {i}'s version"
        if t.requires_grad:
            assert t.grad is not None, f"{info.name}: input {i} got no gradient"
            assert t.grad.shape == t.shape and t.grad.dtype == t.dtype, info.name


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("info, shapes", CASES)
def test_strided_and_transposed_inputs_match_contiguous_copies(info, shapes, dtype, layout, device):
    """Reliability row 6: kernels handle strides or make the input contiguous themselves."""
    arrays = info.make_inputs(np.random.default_rng(5), shapes, dtype)
    moved = [relayout(a, layout) for a in arrays]
    if all(m.flags.c_contiguous for m in moved):
        pytest.skip(f"{layout} leaves these shapes contiguous (0-d, empty, or one long dim)")
    out, grads = _grads(info, arrays, device)
    out2, grads2 = _grads(info, moved, device)
    what = f"{info.name} {layout} {np.dtype(dtype).name} on {device}"
    assert_close(out2, out.numpy(), **tol(dtype), what=f"{what} forward")
    for i, (g, g2) in enumerate(zip(grads, grads2, strict=True)):
        assert (g is None) == (g2 is None), what
        if g is not None:
            assert_close(g2, g, **tol(dtype, "grad"), what=f"{what} grad of input {i}")


@pytest.mark.parametrize("info", KINKS)
def test_grad_at_kinks_is_the_documented_subgradient(info, device):
    """Reliability row 9: relu'(0) = 0, abs'(0) = 0, ties split evenly, clip passes."""
    arrays, expected = info.kink
    for dtype in (np.float32, np.float64):
        cast = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
        inputs = _tensors(info, cast, device, requires_grad=True)
        info.fn(*inputs).sum().backward()
        for i, (t, e) in enumerate(zip(inputs, expected, strict=True)):
            if e is None:
                assert t.grad is None
                continue
            assert_close(t.grad, e, **tol(dtype, "grad"), what=f"{info.name} kink, input {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("info, shapes", FUSED)
def test_fused_op_matches_its_composition(info, shapes, dtype, device):
    """Reliability row 23: one semantics, whichever kernel runs."""
    arrays = info.make_inputs(np.random.default_rng(6), shapes, dtype)
    out, grads = _grads(info, arrays, device)
    composed = type(info)(**{**info.__dict__, "fn": info.composed})
    out2, grads2 = _grads(composed, arrays, device)
    what = f"{info.name} fused vs composed, {np.dtype(dtype).name} on {device}"
    assert out.dtype == out2.dtype, what
    assert_close(out, out2.numpy(), **tol(dtype, "grad"), what=what)
    for i, (g, g2) in enumerate(zip(grads, grads2, strict=True)):
        if g is not None:
            assert_close(g, g2, **tol(dtype, "grad"), what=f"{what}: grad of input {i}")


@pytest.mark.gpu
@pytest.mark.parametrize("info, shapes", CASES)
def test_cpu_and_gpu_agree_on_values_and_grads(info, shapes):
    """Reliability row 21: float32 forward within assert_close's defaults, grads looser."""
    reason = gg.cuda.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA device: {reason}")
    arrays = info.make_inputs(np.random.default_rng(7), shapes, np.float32)
    out, grads = _grads(info, arrays, "cpu")
    out2, grads2 = _grads(info, arrays, "cuda")
    assert out2.device.startswith("cuda")
    what = f"{info.name} cpu vs cuda"
    assert_close(out2, out.numpy(), **tol(np.float32), what=what)
    for i, (g, g2) in enumerate(zip(grads, grads2, strict=True)):
        if g is not None:
            assert_close(g2, g, **tol(np.float32, "grad"), what=f"{what}: grad of input {i}")


# ----------------------------------------------------------------------------- implementations
# Every fast path registered on an op meets every sample of that op, in both dtypes and every
# layout, forward and backward, and must give the reference's values and gradients. Each run
# keeps one path and the reference (Op.restricted), so a path that declines a sample
# (NotImplemented) leaves the reference to answer it, and the counts show which samples reached
# the path. A registered path that no sample reaches is a path nobody tests: that fails too.

# Settings under which a fast path is eligible at all (the tiled SGEMM replaces cuBLAS only
# when asked to).
PATH_CONFIG = {"matmul": {"matmul": "custom"}, "linear": {"matmul": "custom"}}


def _paths(name, kind):
    op = gg.OPS[name]
    return [("forward", p) for p in op.fast_paths[kind]] + [
        ("backward", p) for p in op.fast_backward_paths[kind]
    ]


def _kind(device):
    return "cpu" if device == "cpu" else "cuda"


def _run_restricted(info, arrays, device, direction, path):
    op = gg.OPS[info.name]
    chosen = {direction: path} if path is not None else {}
    for key, value in PATH_CONFIG.get(info.name, {}).items():
        setattr(gg.config, key, value)
    with op.restricted(_kind(device), **chosen) as counts:
        out, grads = _grads(info, arrays, device)
    return out, grads, counts


def _cases_with_fast_paths(kind):
    marks = [pytest.mark.gpu] if kind == "cuda" else []
    return [
        pytest.param(info, shapes, kind, id=f"{kind}-{_id(info, k)}", marks=marks)
        for info in OP_INFOS
        if _paths(info.name, kind)
        for k, shapes in enumerate(info.shapes)
    ]


def _on(kind):
    """The device a kind's cases run on; skips without a GPU (as the device fixture does)."""
    if kind == "cpu":
        return "cpu"
    reason = gg.cuda.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA device: {reason}")
    return "cuda"


@pytest.mark.parametrize("layout", ("contiguous", *LAYOUTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "info, shapes, kind", _cases_with_fast_paths("cpu") + _cases_with_fast_paths("cuda")
)
def test_every_fast_path_matches_the_reference(info, shapes, kind, dtype, layout):
    device = _on(kind)
    arrays = info.make_inputs(np.random.default_rng(8), shapes, dtype)
    arrays = [relayout(a, layout) for a in arrays]
    out, grads, _ = _run_restricted(info, arrays, device, "forward", None)
    for direction, path in _paths(info.name, kind):
        out2, grads2, counts = _run_restricted(info, arrays, device, direction, path)
        what = f"{path.name} ({direction}) on {info.name} {shapes} {layout} {np.dtype(dtype).name}"
        assert counts[direction] + counts[f"{direction}_declined"] > 0, f"{what}: never called"
        assert out2.dtype == out.dtype and out2.shape == out.shape, what
        assert_close(out2, out.numpy(), **tol(dtype, "grad"), what=f"{what}: value")
        for i, (g, g2) in enumerate(zip(grads, grads2, strict=True)):
            assert (g is None) == (g2 is None), what
            if g is not None:
                assert_close(g2, g, **tol(dtype, "grad"), what=f"{what}: grad of input {i}")


@pytest.mark.parametrize("kind", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_every_registered_fast_path_is_reached_by_some_sample(kind):
    device = _on(kind)
    reached = {}
    for info in OP_INFOS:
        for direction, path in _paths(info.name, kind):
            key = (info.name, direction, path.name)
            reached.setdefault(key, 0)
            for shapes in info.shapes:
                for dtype in (np.float32, np.float64):
                    arrays = info.make_inputs(np.random.default_rng(8), shapes, dtype)
                    *_, counts = _run_restricted(info, arrays, device, direction, path)
                    reached[key] += counts[direction]
    registered = {
        (name, direction, path.name) for name in gg.OPS for direction, path in _paths(name, kind)
    }
    assert registered, f"no fast path registered for {kind}"
    unsampled = sorted(registered - set(reached))
    assert not unsampled, f"fast paths of ops without op-info samples: {unsampled}"
    never = sorted(key for key, n in reached.items() if n == 0)
    assert not never, f"registered fast paths that no sample reaches: {never}"


# ----------------------------------------------------------------------------- second order
# Gradients of gradients (create_graph=True): every op's backward runs again on recorded
# tensors, or, for fused ops, their composed form is differentiated. gradgradcheck compares the
# gradient of the gradient with central differences of the first gradient.

GRADGRAD_SKIPS = {
    "cast": "float32 rounding defeats eps=1e-6 (as for its first derivative)",
}


@pytest.mark.parametrize("info, shapes", CASES)
def test_second_derivatives_match_finite_differences(info, shapes):
    if info.name in GRADGRAD_SKIPS:
        pytest.skip(f"{info.name}: {GRADGRAD_SKIPS[info.name]}")
    rng = np.random.default_rng(9)
    arrays = info.make_inputs(rng, shapes, np.float64)
    inputs = _tensors(info, arrays, "cpu", requires_grad=True)
    assert gg.gradgradcheck(info.fn, inputs, n_directions=2)


def _second_order(info, arrays, device):
    """First gradients (with a random cotangent v) and the gradient of <w, those gradients>,
    taken with create_graph: one Hessian-vector product per input, or None."""
    inputs = _tensors(info, arrays, device, requires_grad=True)
    xs = [t for t in inputs if t.requires_grad]
    out = info.fn(*inputs)
    if not xs or not out.requires_grad:
        return [], []
    rng = np.random.default_rng(11)
    v = gg.tensor(np.asarray(rng.standard_normal(out.shape), out.dtype), device=device)
    grads = gg.grad(out, xs, v, create_graph=True, allow_unused=True)
    w = [gg.tensor(rng.standard_normal(x.shape), device=device) for x in xs]
    terms = [(g * wi).sum() for g, wi in zip(grads, w, strict=True) if g is not None]
    terms = [t for t in terms if t.requires_grad]
    second = [None] * len(xs)
    if terms:
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        second = gg.grad(total, xs, allow_unused=True)
    first = [None if g is None else g.numpy() for g in grads]
    return first, [None if h is None else h.numpy() for h in second]


@pytest.mark.gpu
@pytest.mark.parametrize("info, shapes", CASES)
def test_second_derivatives_on_the_gpu_match_the_cpu(info, shapes):
    """create_graph on CUDA: every op's backward recorded on the device (gpugrad/graph.py),
    differentiated again, float64, equal to the CPU's."""
    reason = gg.cuda.unavailable_reason()
    if reason is not None:
        pytest.skip(f"no CUDA device: {reason}")
    arrays = info.make_inputs(np.random.default_rng(12), shapes, np.float64)
    cpu = _second_order(info, arrays, "cpu")
    gpu = _second_order(info, arrays, "cuda")
    for order, a_list, b_list in zip(("first", "second"), gpu, cpu, strict=True):
        assert len(a_list) == len(b_list)
        for i, (a, b) in enumerate(zip(a_list, b_list, strict=True)):
            what = f"{info.name} {shapes}: {order} derivative, input {i}"
            assert (a is None) == (b is None), what
            if a is not None:
                assert_close(a, b, **tol(np.float64, "grad"), what=what)
