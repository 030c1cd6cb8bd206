"""The physics-informed MLP of examples/pinn.py learns sin(pi x) from its own second derivative."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pinn.py"


def test_the_pinn_example_solves_the_equation_to_within_1e_2():
    spec = importlib.util.spec_from_file_location("pinn_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = []
    error, _ = module.train(log=lines.append)
    assert error < 1e-2, "\n".join(lines)
    assert lines[-1].startswith("max |u - sin(pi x)|")
