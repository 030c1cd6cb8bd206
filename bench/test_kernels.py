"""Every Numba kernel of the CPU backend, checked against its NumPy reference, then timed.

``extra_info`` carries the bytes each call must move and the GB/s of copying as many bytes (the
same working set), so achieved bandwidth = bytes / mean time; ``gpugrad bench --kernels``
prints that table directly.
"""

from __future__ import annotations

import pytest

from gpugrad.benchmark.kernels import _same, copy_ceiling, kernel_cases

CASES = kernel_cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_kernel(benchmark, case):
    name, nbytes, fast, ref = case
    if ref is not None:
        assert _same(fast(), ref()), f"{name}: differs from the NumPy reference"
    benchmark.group = "kernel " + name.split()[0]
    benchmark.extra_info.update(bytes=nbytes, copy_ceiling_gb_s=copy_ceiling(nbytes))
    benchmark(fast)
