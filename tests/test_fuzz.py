"""Random expression graphs against finite differences in float64 (hypothesis).

A graph is a list of steps over a growing pool of values: each step applies a random op from a
safe subset (smooth where sampled, defined on all reals or guarded) to earlier values, so
intermediate values are reused and diamonds form naturally; binary ops broadcast shapes drawn
from a small family. The output is the weighted sum of the last values. The analytic gradient
of every leaf must match central differences (gg.gradcheck), and the same gradients must come
out with the fast paths on and off: the vocabulary includes fused ops whose CPU fast paths
(Numba) take float64 inputs, so the two runs execute different code. When a graph fails,
hypothesis shrinks it and the failure message is a Python snippet that rebuilds the minimal
graph.

Profiles (tests/conftest.py): "ci" by default, "long" with GPUGRAD_FUZZ=long.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

import gpugrad as gg

# Shapes that broadcast against each other in every pairing.
SHAPES = [(), (1,), (3,), (2, 1), (2, 3), (1, 3)]

# name -> (arity, code template). Unary ops keep values in a range where they are smooth and
# finite: log/sqrt see x * x + 0.5, division sees a denominator >= 0.5.
UNARY = {
    "neg": "-{0}",
    "exp": "({0} * 0.3).exp()",
    "log": "({0} * {0} + 0.5).log()",
    "sqrt": "({0} * {0} + 0.5).sqrt()",
    "tanh": "{0}.tanh()",
    "sigmoid": "{0}.sigmoid()",
    "square": "{0} ** 2",
    "sum_keep": "{0}.sum(axis=-1, keepdims=True)",
    "mean_keep": "{0}.mean(axis=-1, keepdims=True)",
    "softmax": "F.softmax({0})",
    "log_softmax": "F.log_softmax({0})",
    "transpose": "{0}.T",
    "scale": "({0} * 0.5 + 0.25)",
    # fused ops with CPU fast paths (Numba), so kernels on and off run different code
    "cross_entropy": "F.cross_entropy({0}, gg.tensor(np.arange({0}.shape[0]) % {0}.shape[1]))",
    "cross_entropy_rows": (
        'F.cross_entropy({0}, gg.tensor(np.arange({0}.shape[0]) % {0}.shape[1]), reduction="none")'
    ),
}
BINARY = {
    "add": "({0} + {1})",
    "sub": "({0} - {1})",
    "mul": "({0} * {1})",
    "div": "({0} / ({1} * {1} + 0.5))",
    "where": "gg.where({0}.numpy() > {1}.numpy(), {0}, {1})",
    "mse": 'F.mse_loss({0}, {1}, reduction="none")',
    "bce_logits": 'F.binary_cross_entropy_with_logits({0}, {1}.sigmoid(), reduction="none")',
    "bias_tanh": 'fused.bias_act({0}, {1}, activation="tanh")',
    "bias_identity": 'fused.bias_act({0}, {1}, activation="identity")',
}
# Entries that run a registered CPU fast path, with the op that has it (checked below).
FAST = {
    "cross_entropy": "cross_entropy",
    "cross_entropy_rows": "cross_entropy",
    "mse": "mse_loss",
    "bce_logits": "binary_cross_entropy_with_logits",
    "bias_tanh": "bias_act",
    "bias_identity": "bias_act",
}
# Ops whose result is not a smooth function of inputs near ties; "where" is piecewise with
# jumps exactly where {0} == {1}: values drawn as continuous floats never sit there.
OPS = {**{k: 1 for k in UNARY}, **{k: 2 for k in BINARY}}


@st.composite
def graphs(draw):
    n_leaves = draw(st.integers(1, 3))
    leaves = [draw(st.sampled_from(SHAPES)) for _ in range(n_leaves)]
    steps = []
    shapes = list(leaves)
    for _ in range(draw(st.integers(1, 8))):
        name = draw(st.sampled_from(sorted(OPS)))
        args = [draw(st.integers(0, len(shapes) - 1)) for _ in range(OPS[name])]
        try:
            shape = _shape_of(name, [shapes[a] for a in args])
        except ValueError:
            continue  # shapes that do not broadcast: drop the step
        steps.append((name, args))
        shapes.append(shape)
    seed = draw(st.integers(0, 2**16))
    return leaves, steps, seed


def _shape_of(name, shapes):
    if name.startswith("cross_entropy"):
        if len(shapes[0]) != 2:
            raise ValueError("cross_entropy takes (N, C) scores")
        return () if name == "cross_entropy" else shapes[0][:1]
    if name in ("mse", "bce_logits"):
        if shapes[0] != shapes[1]:
            raise ValueError(f"{name} takes two tensors of one shape")
        return shapes[0]
    if name.startswith("bias_"):
        if not shapes[0] or shapes[1] != shapes[0][-1:]:
            raise ValueError("bias_act takes z (..., C) and a bias (C,)")
        return shapes[0]
    if name == "transpose":
        return shapes[0][::-1]
    if name in ("sum_keep", "mean_keep", "softmax", "log_softmax") and shapes[0] == ():
        raise ValueError(f"{name} needs an axis")
    if name in ("sum_keep", "mean_keep"):
        return shapes[0][:-1] + (1,)
    return np.broadcast_shapes(*shapes)


def to_code(leaves, steps, seed):
    """The graph as a runnable snippet: paste it into a Python prompt to reproduce a failure."""
    n = len(leaves)
    names = [f"v{i}" for i in range(n + len(steps))]
    lines = [
        "import numpy as np",
        "import gpugrad as gg",
        "import gpugrad.functional as F",
        "from gpugrad import fused",
        f"rng = np.random.default_rng({seed})",
    ]
    lines += [
        f"v{i} = gg.tensor(np.asarray(rng.standard_normal({shape!r})), requires_grad=True)"
        for i, shape in enumerate(leaves)
    ]
    lines.append(f"def f({', '.join(names[:n])}):")
    for k, (name, args) in enumerate(steps):
        template = UNARY.get(name) or BINARY[name]
        lines.append(f"    v{n + k} = {template.format(*(names[a] for a in args))}")
    outs = names[n:][-3:] or names[n - 1 : n]
    total = " + ".join(f"({o} * {j + 1.0}).sum()" for j, o in enumerate(outs))
    lines.append(f"    return {total}")
    lines.append(f"print(gg.gradcheck(f, [{', '.join(names[:n])}]))")
    return "\n".join(lines)


def _build(leaves, steps, seed):
    code = to_code(leaves, steps, seed)
    scope = {}
    exec(compile(code.rsplit("\n", 1)[0], "<fuzz graph>", "exec"), scope)
    return code, scope["f"], [scope[f"v{i}"] for i in range(len(leaves))]


@given(graphs())
def test_random_graphs_match_finite_differences(graph):
    code, f, inputs = _build(*graph)
    note(code)
    # Chains of squares and products can overflow; huge values also drown finite differences
    # in rounding error. Such graphs say nothing about gradients: draw another.
    assume(abs(f(*inputs).item()) < 1e3)
    try:
        gg.gradcheck(f, inputs, atol=1e-5, rtol=1e-4)
    except gg.GradcheckError as e:
        raise AssertionError(f"{e}\nreproduce with:\n{code}") from None


@given(graphs())
def test_random_graphs_give_the_same_gradients_with_and_without_kernels(graph):
    code, f, inputs = _build(*graph)
    assume(abs(f(*inputs).item()) < 1e3)
    grads = []
    for kernels in (True, False):
        gg.config.kernels = kernels
        for t in inputs:
            t.grad = None
        f(*inputs).backward()
        grads.append([None if t.grad is None else t.grad.numpy().copy() for t in inputs])
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None), code
        if a is not None:
            assert np.allclose(a, b, rtol=1e-10, atol=1e-12), f"kernels on vs off:\n{code}"


def test_a_failing_graph_is_reported_as_runnable_code():
    leaves, steps = [(2, 3), (3,)], [("mul", [0, 1]), ("tanh", [2]), ("add", [3, 0])]
    code, f, inputs = _build(leaves, steps, 7)
    assert "    v2 = (v0 * v1)" in code and "print(gg.gradcheck(f, [v0, v1]))" in code
    exec(compile(code, "<snippet>", "exec"), {})  # runs on its own, gradcheck included
    assert gg.gradcheck(f, inputs)


@pytest.mark.parametrize("name", FAST)
def test_the_fuzz_vocabulary_reaches_the_cpu_fast_paths(name):
    """The kernels-on-vs-off property means something only if its graphs run fast paths."""
    shapes = [(2, 3)] if name in UNARY else [(2, 3), (3,) if name.startswith("bias_") else (2, 3)]
    steps = [(name, list(range(len(shapes))))]
    _, f, inputs = _build(shapes, steps, 0)
    op = gg.OPS[FAST[name]]
    (path,) = op.fast_paths["cpu"]
    with op.restricted("cpu", forward=path) as counts:
        f(*inputs).backward()
    assert counts["forward"] >= 1, f"{name} never ran {path.name}"
