"""The examples in the README and in docstrings run and say what they claim."""

from __future__ import annotations

import contextlib
import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest
from emulated import built_kernels  # noqa: F401  (the emulator_kernels fixture)

import gpugrad

ROOT = Path(__file__).resolve().parent.parent


def _readme_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def trained_digits(tmp_path_factory):
    """A folder holding runs/digits as gpugrad train leaves it (one epoch, no plots)."""
    from gpugrad.train import run_cli

    root = tmp_path_factory.mktemp("readme")
    out = root / "runs" / "digits"
    assert run_cli({"epochs": 1, "device": "cpu", "out": str(out), "plots": False}) == 0
    return root


@pytest.mark.parametrize("index", range(len(_readme_blocks())))
def test_readme_python_examples_run(index, capsys, request, monkeypatch):
    block = _readme_blocks()[index]
    device = contextlib.nullcontext()
    if 'device="cuda"' in block and not gpugrad.cuda_is_available():
        # no GPU: the example runs on the emulated CUDA device instead (its kernels included)
        from gpugrad import cuda_emulator

        request.getfixturevalue("emulator_kernels")  # skips, with the reason, without g++
        device = cuda_emulator.installed()
    if "import torch" in block:
        pytest.importorskip("torch")
    if "runs/digits/" in block:  # an example that uses what gpugrad train wrote
        monkeypatch.chdir(request.getfixturevalue("trained_digits"))
        capsys.readouterr()  # the training run's own output
    with device:
        exec(compile(block, f"README.md[python block {index}]", "exec"), {})
    out = capsys.readouterr().out
    if "(1, -3, 4)" in block:
        assert out.splitlines()[0] == "-8.0 4.0 4.0 -2.0"
    if "best model:" in block:  # the weights gpugrad train saved classify the test split
        accuracy = float(re.fullmatch(r"best model: (\S+)% on the test split\n", out)[1])
        assert accuracy > 50


def _modules():
    for info in pkgutil.walk_packages(gpugrad.__path__, "gpugrad."):
        if info.name.endswith("__main__"):
            continue
        yield info.name


@pytest.mark.parametrize("name", sorted(_modules()))
def test_docstring_examples_pass(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} doctests failed"
