"""Compile every kernels/*.cu with NVRTC for sm_80 and sm_90; no GPU needed.

NVRTC (pip: nvidia-cuda-nvrtc, driven through cuda-bindings) is the compiler CuPy uses at run
time, so a file that compiles here compiles there. For each file and architecture this builds a
CUBIN from the source text and with the options the CUDA backend uses, asks NVRTC's embedded
ptxas for ``-v`` output, and fails on any error or warning, on a kernel named by the backend's
KERNELS table (``gpugrad/backends/cuda/runtime.py``) that the file does not define, and on any
register spill in a fused loss or activation kernel. ``--ptx`` additionally writes PTX and runs
the CUDA toolkit's ``ptxas -v`` on it (that ptxas must be at least as new as NVRTC: PTX carries
NVRTC's ISA version).

    python tools/compile_kernels.py                 # all files, sm_80 and sm_90, a summary
    python tools/compile_kernels.py -v --arch sm_90 kernels/matmul.cu
    python tools/compile_kernels.py --json report.json

Exit status 0 when everything compiled cleanly, 1 otherwise (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = ROOT / "kernels"
ARCHS = ("sm_80", "sm_90")
OPTIONS = ("-std=c++17",)  # the same options gpugrad/backends/cuda/runtime.py passes to RawModule
NO_SPILL_FILES = ("activations.cu", "bias_act.cu", "softmax_xent.cu", "losses.cu", "layernorm.cu")

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


class CompileError(RuntimeError):
    """A kernel file failed to compile, warned, spilled, or lacks a kernel the backend uses."""


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:
        raise ImportError(
            f"NVRTC is not importable ({e}); pip install nvidia-cuda-nvrtc cuda-bindings"
        ) from e
    return nvrtc


def _check(nvrtc, result, what):
    err = result[0] if isinstance(result, tuple) else result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, msg = nvrtc.nvrtcGetErrorString(err)
        raise CompileError(f"{what}: {msg.decode()}")
    return result[1:] if isinstance(result, tuple) and len(result) > 1 else None


def nvrtc_compile(path: Path, arch: str, ptx: bool = False, verbose_ptxas: bool = True):
    """Compile one file; return (log text, binary bytes). Raises CompileError on failure."""
    nvrtc = _nvrtc()
    src = kernel_source(path).encode()
    err, prog = nvrtc.nvrtcCreateProgram(src, path.name.encode(), 0, [], [])
    _check(nvrtc, err, f"{path.name}: nvrtcCreateProgram")
    target = arch.replace("sm_", "compute_") if ptx else arch
    opts = [*OPTIONS, f"--gpu-architecture={target}", f"--include-path={KERNEL_DIR}"]
    if verbose_ptxas and not ptx:
        opts.append("--ptxas-options=-v")
    opts_b = [o.encode() for o in opts]
    try:
        (result,) = nvrtc.nvrtcCompileProgram(prog, len(opts_b), opts_b)
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        log = log.rstrip(b"\0 ").decode(errors="replace")
        if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise CompileError(f"{path.name} ({arch}) failed to compile:\n{log}")
        getsize, get = (
            (nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX)
            if ptx
            else (nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN)
        )
        _, size = getsize(prog)
        binary = b" " * size
        get(prog, binary)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    return log, binary


def parse_ptxas(log: str) -> dict[str, dict]:
    """Registers, spills, stack and shared memory per entry function from ``ptxas -v`` text."""
    kernels: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = kernels.setdefault(m.group(1), {"registers": None, "spill_bytes": 0})
            continue
        if current is None:
            continue
        m = _SPILL.search(line)
        if m:
            current["stack_bytes"] = int(m.group(1))
            current["spill_bytes"] = int(m.group(2)) + int(m.group(3))
        m = _REGS.search(line)
        if m:
            current["registers"] = int(m.group(1))
            s = _SMEM.search(line)
            current["smem_bytes"] = int(s.group(1)) if s else 0
    return kernels


def _warnings(log: str) -> list[str]:
    return [ln for ln in log.splitlines() if re.search(r"\bwarning\b", ln, re.IGNORECASE)]


def _backend():
    sys.path.insert(0, str(ROOT))
    try:
        from gpugrad.backends import cuda
    finally:
        sys.path.pop(0)
    return cuda


def kernel_source(path: Path) -> str:
    """What the CUDA backend hands NVRTC for this file (``gpugrad.backends.cuda.source``): the
    activation and optimizer ``#define`` lines, then the file with ``common.cuh`` pasted in."""
    return _backend().source(path.name, path.resolve().parent)


def expected_kernels() -> dict[str, set[str]]:
    """Kernel names per file that the CUDA backend launches (both dtypes of each base name)."""
    kernels = _backend().KERNELS
    return {f: {f"{b}_{s}" for b in bases for s in ("f32", "f64")} for f, bases in kernels.items()}


def toolkit_ptxas(ptx: bytes, arch: str) -> str:
    """Run the CUDA toolkit's ``ptxas -v`` on PTX text; return its report."""
    exe = shutil.which("ptxas")
    if exe is None:
        raise CompileError("--ptx: ptxas is not on PATH (it comes with the CUDA toolkit)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_bytes(ptx.rstrip(b"\0 "))
        proc = subprocess.run(
            [exe, "-v", f"-arch={arch}", str(src), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise CompileError(
            f"toolkit ptxas failed ({proc.stderr.strip().splitlines()[:1]}); if it reports an "
            "unsupported .version, NVRTC is newer than the toolkit: install the "
            "nvidia-cuda-nvrtc release matching `ptxas --version`"
        )
    return proc.stderr


def _build(job):
    """One (file, arch) build in a worker process: (log or None, error text or None, ptx info)."""
    path, arch, ptx = job
    try:
        log, _ = nvrtc_compile(path, arch)
    except CompileError as e:
        return None, str(e), None
    ptx_info = None
    if ptx:
        try:
            _, text = nvrtc_compile(path, arch, ptx=True)
            ptx_info = parse_ptxas(toolkit_ptxas(text, arch))
        except CompileError as e:
            return log, f"{path.name} ({arch}): {e}", None
    return log, None, ptx_info


def compile_all(files, archs=ARCHS, ptx=False, jobs=None):
    """Compile ``files`` for ``archs`` (in parallel processes); return (rows, problems)."""
    rows, problems = [], []
    expected = expected_kernels()
    work = [(path, arch, ptx) for path in files for arch in archs]
    jobs = jobs or min(len(work), os.cpu_count() or 1)
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(_build, work))
    else:
        results = [_build(w) for w in work]
    for (path, arch, _), (log, error, ptx_info) in zip(work, results, strict=True):
        if error:
            problems.append(error)
        if log is None:
            continue
        warns = _warnings(log)
        if warns:
            problems.append(f"{path.name} ({arch}): warnings:\n" + "\n".join(warns))
        info = ptx_info or parse_ptxas(log)
        missing = expected.get(path.name, set()) - set(info)
        if missing:
            problems.append(
                f"{path.name} ({arch}): kernels listed in gpugrad/backends/cuda/runtime.py are not "
                f"defined: {sorted(missing)}"
            )
        for name, k in sorted(info.items()):
            rows.append({"file": path.name, "arch": arch, "kernel": name, **k})
            if path.name in NO_SPILL_FILES and k["spill_bytes"]:
                problems.append(
                    f"{path.name} ({arch}): kernel {name} spills {k['spill_bytes']} bytes "
                    f"({k['registers']} registers); fused loss and activation kernels must not"
                )
    return rows, problems


def _table(rows) -> str:
    lines = [f"{'file':<18}{'kernel':<30}{'arch':<7}{'regs':>5}{'spill B':>9}{'smem B':>8}"]
    for r in rows:
        lines.append(
            f"{r['file']:<18}{r['kernel']:<30}{r['arch']:<7}{r['registers'] or 0:>5}"
            f"{r['spill_bytes']:>9}{r.get('smem_bytes', 0):>8}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="default: every kernels/*.cu")
    parser.add_argument("--arch", action="append", help="sm_80, sm_90, ... (repeatable)")
    parser.add_argument("--ptx", action="store_true", help="also run the toolkit's ptxas -v")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every kernel")
    parser.add_argument("--json", type=Path, help="write the per-kernel report here")
    args = parser.parse_args(argv)
    files = args.files or sorted(KERNEL_DIR.glob("*.cu"))
    if not files:
        print(f"no .cu files in {KERNEL_DIR}", file=sys.stderr)
        return 1
    rows, problems = compile_all(files, tuple(args.arch or ARCHS), ptx=args.ptx)
    if args.verbose:
        print(_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"kernels": rows, "problems": problems}, indent=1))
    worst = max((r["registers"] or 0 for r in rows), default=0)
    print(
        f"compiled {len(files)} file(s) for {', '.join(args.arch or ARCHS)}: {len(rows)} kernel "
        f"builds, at most {worst} registers, "
        f"{sum(1 for r in rows if r['spill_bytes'])} with spills, {len(problems)} problem(s)"
    )
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
