"""The rows of ``gpugrad bench --kernels`` (and of ``pytest bench/``'s kernel groups): every
Numba kernel behind the CPU fast paths of the op table has a row, each row's Numba side takes
its inputs and agrees with its NumPy side, and that NumPy side is the reference of the op whose
fast path the row runs (what runs when the kernel declines), so a row's ratio is what the
kernel saves."""

from __future__ import annotations

import importlib
import itertools
import sys

import numpy as np
import pytest

from gpugrad.benchmark import kernels
from gpugrad.dispatch import OPS

CASES = kernels.kernel_cases()


def _cpu_paths():
    """(op, "forward" | "backward", FastPath) for every CPU fast path of the op table."""
    for op in OPS.values():
        for path in op.fast_paths["cpu"]:
            yield op, "forward", path
        for path in op.fast_backward_paths["cpu"]:
            yield op, "backward", path


FAST = {path.fn.__code__: (op.name, d) for op, d, path in _cpu_paths()}
REFERENCE = {}
for _op in OPS.values():
    REFERENCE[_op.fwd.__code__] = (_op.name, "forward")
    if _op.bwd is not None:
        REFERENCE[_op.bwd.__code__] = (_op.name, "backward")


def _called(fn, table) -> set:
    """The entries of ``table`` (code object -> label) whose functions ``fn()`` calls."""
    seen = set()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code in table:
            seen.add(table[frame.f_code])

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


TIMED = [c for c in CASES if c.ref is not None]


@pytest.mark.parametrize("case", TIMED, ids=[c.name for c in TIMED])
def test_a_row_times_a_fast_path_against_its_ops_reference(case):
    kernels.check(case)
    fast = _called(case.fast, FAST)
    assert len(fast) == 1, f"{case.name}: its Numba side runs {fast or 'no CPU fast path'}"
    assert _called(case.ref, REFERENCE) == fast, f"{case.name}: not the reference of {fast}"


def test_every_numba_kernel_of_a_cpu_fast_path_has_a_row(monkeypatch):
    ran = {}
    for _, _, path in _cpu_paths():
        module = importlib.import_module(path.fn.__module__)
        for name in path.kernels:
            kernel = getattr(module, name, None)
            if kernel is None or (module.__name__, name) in ran:
                continue  # a NumPy function named in prose ("numpy tanh"), or seen already
            ran[module.__name__, name] = 0

            def counted(*args, key=(module.__name__, name), kernel=kernel):
                ran[key] += 1
                return kernel(*args)

            monkeypatch.setattr(module, name, counted)
    assert len(ran) >= 10  # the launchers above name their kernels
    for case in CASES:
        case.fast()
    missing = [f"{module}.{name}" for (module, name), n in ran.items() if n == 0]
    assert not missing, f"kernels without a row: {missing}"


def test_layer_rows_count_the_arrays_their_kernels_read_and_write():
    rows = {c.name: c for c in kernels.layer_cases()}
    assert len(rows) == 11
    f32, f64 = 4 * 256 * 1024, 8 * 256 * 1024  # one (256, 1024) block
    assert rows["gelu fwd 262144 float32"].nbytes == 2 * f32
    assert rows["gelu bwd 262144 float32"].nbytes == 3 * f32  # dout, x in; dx out
    assert rows["silu bwd 262144 float64"].nbytes == 3 * f64
    # GELU's backward reads dout, z and b (z + b recomputed), not the output; writes dz, db
    assert rows["bias_act bwd gelu 256x1024 float32"].nbytes == 3 * f32 + 2 * 4 * 1024
    assert rows["bias_act fwd silu 256x1024 float64"].nbytes == 2 * f64 + 8 * 1024
    ln = 4 * 1024 * 1024
    # forward: x, w, b in; out, mean, rstd out. backward: dout, mean, rstd, x, w in (not the
    # bias); dx, dw, db out
    assert rows["layer_norm fwd 1024x1024 float32"].nbytes == 2 * ln + 2 * 4096 + 2 * 4096
    assert rows["layer_norm bwd 1024x1024 float32"].nbytes == 3 * ln + 2 * 4096 + 3 * 4096
    xent = rows["cross_entropy weight+label_smoothing 4096x100 float32"]
    assert xent.nbytes == 2 * 4096 * 100 * 4 + 8 * 4096 + 4 * 100 + 4  # + targets, weight, loss


def test_a_row_whose_fast_path_declines_is_an_error():
    x = np.ones(4, np.float32)
    declined = kernels.KernelCase("silu fwd 4 float32", 32, lambda: NotImplemented, lambda: x)
    with pytest.raises(AssertionError, match="declines"):
        kernels.check(declined)
    wrong = kernels.KernelCase("wrong", 32, lambda: x + 1e-3, lambda: x)
    with pytest.raises(AssertionError, match="differs"):
        kernels.check(wrong)


def test_kernel_report_records_others_load(monkeypatch):
    case = kernels.KernelCase("copy", 8, lambda: np.ones(1), lambda: np.ones(1))
    monkeypatch.setattr(kernels, "kernel_cases", lambda scale: [case])
    # the machine's busy CPU seconds: 0.05 s more at each reading, far above this process's own
    busy = itertools.count(0.0, 0.05)
    monkeypatch.setattr(kernels, "busy_seconds", lambda: next(busy))
    (row,) = kernels.kernel_report(reps=2, log=lambda *_: None, patience_s=0.0)
    assert row["kernel"] == "copy" and row["reference_ms"] is not None
    assert row["other_load"] > 0
