"""pytest-benchmark suites: ``pytest bench/ --benchmark-only`` (outside the test run).

Groups: one per training config (gpugrad, numpy, torch side by side, each peer in a worker
process of its own, as ``gpugrad bench`` runs them) and one per kernel family (in this process,
pools pinned to every CPU).
"""

from __future__ import annotations

import os

import pytest

from gpugrad.benchmark.machine import thread_limits


@pytest.fixture(scope="session", autouse=True)
def _pinned_threads():
    print("\nthreads: " + thread_limits(os.cpu_count() or 1))
