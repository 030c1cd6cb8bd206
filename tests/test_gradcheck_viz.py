"""gradcheck catches wrong gradients; the DOT graph view shows nodes, leaves and edges."""

from __future__ import annotations

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.functional as F


def test_gradcheck_passes_correct_gradients_and_returns_true():
    x = gg.tensor(np.array([[0.5, -1.0], [2.0, 0.3]]), requires_grad=True)
    w = gg.tensor(np.array([[1.0, 2.0], [-1.0, 0.5]]), requires_grad=True)
    assert gg.gradcheck(lambda a, b: (a @ b).tanh(), [x, w]) is True


def test_gradcheck_names_the_input_and_element_of_a_wrong_gradient():
    x = gg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    # detach() hides one factor from autograd: analytic d/dx = x, numeric = 2x
    with pytest.raises(gg.GradcheckError, match=r"input 0 \(3,\).*analytic .*numeric"):
        gg.gradcheck(lambda a: (a.detach() * a).sum(), [x])


def test_gradcheck_converts_float32_inputs_to_float64_and_needs_a_grad_input():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    assert gg.gradcheck(lambda a: a.exp(), [x])
    with pytest.raises(ValueError, match="no input has requires_grad"):
        gg.gradcheck(lambda a: a.exp(), [gg.tensor([1.0])])


def test_to_dot_lists_ops_shapes_leaves_and_edges():
    x = gg.tensor(np.ones((4, 3)))
    w = gg.tensor(np.ones((2, 3)), requires_grad=True)
    loss = F.relu(F.linear(x, w)).sum()
    dot = gg.viz.to_dot(loss)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    for piece in ("linear", "relu", "sum", "(4, 2)", "leaf", "->"):
        assert piece in dot, piece
    assert dot.count("shape=ellipse") == 1  # only w requires grad; x is a constant


def test_to_dot_handles_deep_graphs_iteratively():
    x = gg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    assert gg.viz.to_dot(y).count('label="add') == 5000
