"""Every kernels/*.cu compiles with NVRTC for sm_80 and sm_90: no GPU needed, only NVRTC.

Runs tools/compile_kernels.py in-process: errors, warnings, a kernel that backends/cuda.py
launches but the file lacks, or a spill in a fused loss or activation kernel all fail.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

try:
    from cuda.bindings import nvrtc  # noqa: F401
except ImportError as e:  # skipped, with the reason, where the CUDA pip extras are absent
    pytest.skip(
        f"NVRTC is not importable ({e}); pip install nvidia-cuda-nvrtc cuda-bindings",
        allow_module_level=True,
    )


def _tool():
    spec = importlib.util.spec_from_file_location(
        "compile_kernels", ROOT / "tools/compile_kernels.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["compile_kernels"] = module  # worker processes find _build by this name
    spec.loader.exec_module(module)
    return module


ck = _tool()


def test_every_kernel_file_compiles_for_sm80_and_sm90_cleanly():
    files = sorted((ROOT / "kernels").glob("*.cu"))
    assert files, "no kernel files found"
    rows, problems = ck.compile_all(files)
    assert not problems, "\n".join(problems)
    built = {(r["file"], r["arch"], r["kernel"]) for r in rows}
    for file, names in ck.expected_kernels().items():
        for arch in ck.ARCHS:
            for name in names:
                assert (file, arch, name) in built, f"{name} missing from {file} ({arch})"
    assert all(r["registers"] for r in rows), "ptxas -v reported no register count"


def test_a_compile_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.cu"
    bad.write_text('extern "C" __global__ void broken_f32(float* x) { x[0] = undefined_name; }\n')
    with pytest.raises(ck.CompileError, match=r"broken\.cu \(sm_90\) failed to compile"):
        ck.nvrtc_compile(bad, "sm_90")


def test_a_warning_is_a_problem(tmp_path):
    warn = tmp_path / "warns.cu"
    warn.write_text('extern "C" __global__ void warns_f32(float* x) { int unused; x[0] = 1; }\n')
    rows, problems = ck.compile_all([warn], archs=("sm_90",), jobs=1)
    assert rows and len(problems) == 1 and "warning" in problems[0]


def test_ptxas_report_is_parsed_per_kernel():
    log = (
        "ptxas info    : Compiling entry function 'k_f32' for 'sm_90'\n"
        "ptxas info    : Function properties for k_f32\n"
        "ptxas         .     8 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
        "ptxas info    : Used 40 registers, used 1 barriers, 256 bytes smem\n"
    )
    assert ck.parse_ptxas(log) == {
        "k_f32": {"registers": 40, "spill_bytes": 12, "stack_bytes": 8, "smem_bytes": 256}
    }
