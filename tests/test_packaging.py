"""The package list in pyproject.toml covers every package, and the data ships with it."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in ROOT.glob("gpugrad/**/__init__.py")
    }
    assert found - listed == set(), f"packages missing from pyproject.toml: {found - listed}"
    assert config["package-dir"]["gpugrad.kernels"] == "kernels"


def test_kernel_sources_and_bundled_data_exist():
    assert sorted(p.name for p in (ROOT / "kernels").glob("*.cu"))
    assert (ROOT / "gpugrad" / "data" / "digits.csv.gz").stat().st_size > 50_000
