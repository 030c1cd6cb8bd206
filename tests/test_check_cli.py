"""`gpugrad check`: the built-in crosscheck cases agree, and a broken fast path is caught."""

from __future__ import annotations

import numpy as np
import pytest

from gpugrad import checks, cli, ops, state
from gpugrad.dispatch import FastPath


def test_check_cases_cover_every_family_and_agree_on_the_cpu():
    lines = []
    assert checks.run(("cpu", "cpu"), out=lines.append) == 0
    table = "\n".join(lines)
    for name in ("matmul", "cross_entropy", "bce_with_logits", "mse_loss", "MLP 12-16-16-5 tanh"):
        assert f"| {name} |" in table
    assert lines[-1].startswith(f"{len(checks.cases())}/{len(checks.cases())} cases agree")


def test_check_fails_and_names_the_op_when_a_fast_path_is_wrong(monkeypatch):
    # a CPU fast path that is 1% off: the float64 reference (fast paths off) must catch it
    def tanh_off_by_one_percent(xp, x):
        return np.tanh(x) * 1.01

    path = FastPath(tanh_off_by_one_percent, "cpu", "forward", None)
    lines = []
    with ops.tanh.restricted("cpu", forward=path):
        assert checks.run(("cpu", "cpu"), out=lines.append) == 1
    assert any("DIFFERS at #" in line and "tanh" in line for line in lines)


def test_check_cli_without_a_gpu_says_so_and_checks_the_cpu(capsys):
    if state.config.kernels is False:
        pytest.skip("kernels disabled")
    import gpugrad as gg

    if gg.cuda_is_available():
        pytest.skip("a GPU is present")
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "no GPU" in out and "cases agree" in out
    assert cli.main(["check", "--devices", "cpu"]) == 2


def test_the_error_columns_show_the_largest_errors():
    lines = []
    assert checks.run(("cpu", "cpu"), out=lines.append) == 0
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and "---" not in line][1:]
    rel = [float(row[3]) for row in rows]
    assert len(rel) == len(checks.cases())
    # float32 against float64 differs somewhere in every case that does arithmetic
    assert sum(r > 0 for r in rel) >= len(rel) - 2, rel
    assert max(rel) < 1e-2


def test_check_names_the_dtype_and_refuses_an_absent_device(capsys):
    import gpugrad as gg

    if gg.cuda_is_available():
        pytest.skip("a GPU is present")
    assert cli.main(["check", "--dtype", "float64", "--devices", "cpu,cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpugrad check: --devices cpu,cuda:") and len(err.splitlines()) == 1
    assert "CUDA is unavailable" in err
    assert cli.main(["check", "--dtype", "float64"]) == 0
    assert "checking the CPU fast paths in float64 against float64" in capsys.readouterr().out
    lines = []
    assert checks.run(("cpu", "cpu"), dtype=np.float64, out=lines.append) == 0
    assert lines[0] == "crosscheck: cpu float64 against cpu float64 reference"
