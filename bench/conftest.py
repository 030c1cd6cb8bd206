"""pytest-benchmark suites: ``pytest bench/ --benchmark-only`` (outside the test run).

Groups: one per training config (gpugrad, numpy, torch side by side) and one per kernel family.
Thread pools are pinned to every CPU for all peers alike, as ``gpugrad bench`` does.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from gpugrad.benchmark import thread_limits


@pytest.fixture(scope="session", autouse=True)
def _pinned_threads():
    with contextlib.suppress(ImportError):
        import torch  # noqa: F401  (so that its pool is pinned too)
    print("\n" + thread_limits(os.cpu_count() or 1))
