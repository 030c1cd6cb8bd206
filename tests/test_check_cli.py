"""`gpugrad check`: the built-in crosscheck cases agree, and a broken fast path is caught."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from emulated import built_kernels  # noqa: F401  (the emulator_kernels fixture)

from gpugrad import activations, checks, cli, ops, state
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


# ----------------------------------------------------------------------------- --emulate


def _gpugrad(*args, **env):
    # GPUGRAD_DEVICE=cpu: --emulate runs the same on a machine with a GPU (which it would
    # otherwise refuse to hide; test_check_emulate_refuses_to_hide_a_gpu covers that).
    return subprocess.run(
        [sys.executable, "-m", "gpugrad", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "GPUGRAD_DEVICE": "cpu", **env},
    )


def test_check_emulate_checks_the_cuda_kernels_on_the_emulated_device(emulator_kernels):
    proc = _gpugrad("check", "--emulate")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("device cuda is gpugrad's emulated CUDA device, not a GPU")
    assert "crosscheck: cuda (emulated) float32 against cpu float64 reference" in lines
    n = len(checks.cases())
    assert lines[-2].startswith(f"{n}/{n} cases agree"), proc.stdout
    assert sum(line.endswith(" |") and "| ok |" in line for line in lines) == n
    launches = int(re.fullmatch(r"(\d+) kernel launches on the emulated device.*", lines[-1])[1])
    assert launches >= len(activations.HIDDEN) * 3  # the kernels ran, not CuPy compositions


def test_check_emulate_without_a_compiler_names_it_and_the_fix():
    proc = _gpugrad("check", "--emulate", CXX="no-such-compiler-here")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("gpugrad check: --emulate: ")
    assert "'no-such-compiler-here' is not on PATH: install g++" in proc.stderr


def test_check_emulate_refuses_to_hide_a_gpu(monkeypatch, capsys):
    import gpugrad as gg

    monkeypatch.setattr(gg, "cuda_is_available", lambda: True)
    monkeypatch.setattr(gg, "cuda_device_count", lambda: 2)
    assert cli.main(["check", "--emulate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpugrad check: --emulate: this machine has 2 CUDA GPU(s)")
    assert "without --emulate" in err and "GPUGRAD_DEVICE=cpu" in err
    assert cli.main(["check", "--emulate", "--devices", "cpu,cpu"]) == 2
    assert "drop --devices" in capsys.readouterr().err


def _relu_past_the_end(xp, x):
    """A CUDA relu fast path whose launch runs 1024 elements past both arrays."""
    from gpugrad.backends import cuda

    out = xp.empty_like(x)
    n = np.int64(x.size + 1024)
    cuda.launch("activations.cu", "relu_fwd", x.dtype, (1,), (256,), (x, out, n))
    return out


def _tanh_one_percent_off(xp, x):
    return xp.tanh(x) * 1.01


def test_check_emulate_fails_on_a_faulting_or_wrong_cuda_path(emulator_kernels, capsys):
    fault = FastPath(_relu_past_the_end, "cuda", "forward")
    wrong = FastPath(_tanh_one_percent_off, "cuda", "forward")
    with ops.relu.restricted("cuda", forward=fault), ops.tanh.restricted("cuda", forward=wrong):
        assert cli.main(["check", "--emulate"]) == 1
    out = capsys.readouterr().out
    assert "| relu/leaky_relu | 0 | 0.00e+00 | 0.00e+00 | FAILED: KernelError (below) |" in out
    assert re.search(r"\| abs/tanh/sigmoid \|.*\| DIFFERS at #\d+ tanh \|", out)
    assert re.search(r"relu/leaky_relu: KernelError: .*relu_fwd_f32.*KernelFault", out)
