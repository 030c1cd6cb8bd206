"""The suite's GPU tests, run on the emulated CUDA device (no GPU needed).

Every GPU-marked test, and every test taking the ``device`` fixture, of the modules in SUITES is
collected here a second time with the emulator installed (the ``device`` fixture then gives
"cuda" only), so the kernel and fast-path checks that otherwise skip on a machine without a GPU
run in CI against the real kernel sources and launchers. Left out: test_long_run.py (over a
minute here) and test_speed.py (timings mean nothing on the emulator).
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from emulated import built_kernels, emulated_cp, emulated_cuda  # noqa: F401  (fixtures)

SUITES = (
    "test_clip_grad",
    "test_cuda",
    "test_ops",
    "test_optim",
    "test_optim_rules",
    "test_reliability",
    "test_crosscheck",
    "test_train_cli",
)


@pytest.fixture(autouse=True)
def _on_the_emulator(cp):
    """Every test here runs with the emulated device installed, even one that asks for no GPU
    fixture (it checks gg.cuda itself)."""
    yield


@pytest.fixture(name="device", params=[pytest.param("cuda", marks=pytest.mark.gpu)])
def emulated_device(cp):
    return "cuda"


# Not re-run: CUDA graph capture is not emulated (Stream.begin_capture raises), and a failed
# capture leaves gpugrad.cuda_graph's capturing flag set for the rest of the process (see
# test_emulator_e2e.py), which would switch off input checks in every later test.
EXCLUDED = {"test_row24_graph_replay_matches_eager_steps_without_leaks_or_host_syncs"}


def _gpu_tests(module):
    for name, fn in vars(module).items():
        if not (name.startswith("test_") and inspect.isfunction(fn)) or name in EXCLUDED:
            continue
        gpu = any(m.name == "gpu" for m in getattr(fn, "pytestmark", []))
        if gpu or "device" in inspect.signature(fn).parameters:
            yield name, fn


for _suite in SUITES:
    for _name, _fn in _gpu_tests(importlib.import_module(_suite)):
        globals()[f"{_name}_emulated_{_suite[5:]}"] = _fn
