"""The examples in the README and in docstrings run and say what they claim."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import gpugrad

ROOT = Path(__file__).resolve().parent.parent


def _readme_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("index", range(len(_readme_blocks())))
def test_readme_python_examples_run(index, capsys):
    block = _readme_blocks()[index]
    if 'device="cuda"' in block and not gpugrad.cuda_is_available():
        pytest.skip("this README example needs a GPU")
    layers = ("LayerNorm", "GELU")  # the PyTorch-script example, until the layers exist
    missing = [n for n in layers if f"nn.{n}(" in block and not hasattr(gpugrad.nn, n)]
    if missing:
        pytest.skip(f"this README example needs gpugrad.nn.{', '.join(missing)} (not built yet)")
    exec(compile(block, f"README.md[python block {index}]", "exec"), {})
    out = capsys.readouterr().out
    if "(1, -3, 4)" in block:
        assert out.splitlines()[0] == "-8.0 4.0 4.0 -2.0"


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
