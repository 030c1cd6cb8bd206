"""Every Numba kernel of the CPU backend, checked against its NumPy reference, then timed
(the rows of ``gpugrad bench --kernels``, the layer kernels' among them).

``extra_info`` carries the bytes each call must move and the GB/s of copying as many bytes (the
same working set), so achieved bandwidth = bytes / mean time; ``gpugrad bench --kernels``
prints that table directly.
"""

from __future__ import annotations

import pytest

from gpugrad.benchmark.kernels import check, copy_ceiling, kernel_cases

CASES = kernel_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel(benchmark, case):
    check(case)  # takes its inputs and agrees with the reference, or fails here
    benchmark.group = "kernel " + case.name.split()[0]
    benchmark.extra_info.update(bytes=case.nbytes, copy_ceiling_gb_s=copy_ceiling(case.nbytes))
    benchmark(case.fast)
