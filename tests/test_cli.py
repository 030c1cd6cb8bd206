"""The command line: the demo trains and its loss falls; info reports the machine."""

from __future__ import annotations

import re
import subprocess
import sys


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "gpugrad", *args], capture_output=True, text=True, timeout=120
    )


def test_demo_shows_the_seed_example_and_a_falling_loss():
    result = _run("demo", "--steps", "200")
    assert result.returncode == 0, result.stderr
    assert "df/dx = 4, df/dy = 4, df/dz = -2" in result.stdout
    losses = [float(v) for v in re.findall(r"loss (\d+\.\d+)", result.stdout)]
    assert len(losses) == 11 and losses[-1] < losses[0] / 3


def test_info_reports_versions_and_cuda_status():
    result = _run("info")
    assert result.returncode == 0, result.stderr
    assert "gpugrad" in result.stdout and "CUDA:" in result.stdout
