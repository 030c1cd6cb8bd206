"""Compile CUDA C++ for the host: a kernel file's text after ``cuda_emu.h``, with g++ (C++17).

A build has two steps. A preprocessor pass (``-DGG_EMU_SCAN``) finds every ``extern "C"
__global__`` kernel with its parameters, its ``__launch_bounds__`` and where it is written; then
g++ compiles the text with one entry point per kernel appended (``gg_emu_launch_<name>``, which
unpacks a CUDA-style ``void**`` argument array into the kernel's parameter types, and
``gg_emu_signature_<name>``, which describes those types so launches can be checked). The
shared object and a JSON description are cached under the hash of everything that went in
(header, source, options, compiler version), so a second build of the same text is a load.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ._config import settings
from .errors import CompileError, EmulatorUnavailable

HEADER = Path(__file__).with_name("cuda_emu.h")
FLAGS = (
    "-std=c++17",
    "-O2",
    "-g1",  # line tables: a fault's instruction maps back to kernel file:line (addr2line)
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-fno-strict-aliasing",  # kernels reinterpret float* as float4*
    "-ffp-contract=off",  # no fused multiply-adds the source did not ask for
    "-fno-math-errno",
    "-U_FORTIFY_SOURCE",
)
ENTRIES_FILE = "<emulator entry points>"
_VERSION = "1"  # bump when entry generation or the cache layout changes


@dataclass
class KernelInfo:
    name: str
    params: list[tuple[str, str]]  # (C type as written after macro expansion, name)
    file: str  # where the kernel is declared (a macro's invocation for generated kernels)
    line: int
    defined_at: str | None  # file:line of the text that spells it, when that is a macro body
    launch_bound: int | None
    signature: list[str] = field(default_factory=list)  # filled from the built object

    @property
    def where(self) -> str:
        at = f"{self.file}:{self.line}"
        if self.defined_at and self.defined_at != at:
            at += f" (defined at {self.defined_at})"
        return at

    def param_text(self) -> str:
        return ", ".join(f"{t} {n}".strip() for t, n in self.params)


@dataclass
class Built:
    """A compiled kernel source: the shared object, its kernels and static shared variables."""

    key: str
    display: str
    so_path: Path
    kernels: dict[str, KernelInfo]
    shared_vars: list[tuple[int, int, str]]  # (offset in the object, size, name)
    anchor: int  # offset of gg_emu_dyn_shared, to find the load address


_compiler_ids: dict[str, str] = {}
_built: dict[str, Built] = {}
_lock = threading.Lock()


def compiler() -> str:
    """The C++ compiler's path; EmulatorUnavailable (with the fix) when there is none."""
    cxx = settings.compiler
    path = shutil.which(cxx)
    if path is None:
        raise EmulatorUnavailable(
            f"the CUDA emulator compiles kernels for the CPU with a C++17 compiler, and {cxx!r} "
            "is not on PATH: install g++ (Debian/Ubuntu: apt-get install g++) or point CXX at one"
        )
    if path not in _compiler_ids:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        except OSError as e:
            raise EmulatorUnavailable(f"cannot run the C++ compiler {path}: {e}") from e
        if out.returncode != 0:
            raise EmulatorUnavailable(f"{path} --version failed: {out.stderr.strip()[:500]}")
        _compiler_ids[path] = out.stdout.splitlines()[0] if out.stdout else path
    return path


def available() -> str | None:
    """None when kernels can be built here, else the reason (for a skip message)."""
    try:
        compiler()
    except EmulatorUnavailable as e:
        return str(e)
    return None


# ----------------------------------------------------------------------------- source text

_LINE_DIRECTIVE = re.compile(r'^\s*#\s*line\s+(\d+)\s+"([^"]*)"\s*$')


def display_name(code: str) -> str:
    """The file a source text comes from: the kernel file its #line directives name, else a
    name made from its hash (RawModule code that came from a string)."""
    names = [m.group(2) for m in map(_LINE_DIRECTIVE.match, code.splitlines()) if m]
    names = [n for n in names if n.endswith((".cu", ".cuh")) and not n.endswith(".cuh")]
    if names:
        return names[-1]
    return f"rawmodule_{hashlib.sha256(code.encode()).hexdigest()[:8]}.cu"


def fix_line_directives(code: str) -> str:
    """Number the lines after a pasted header from where they are in the file.

    ``gpugrad.backends.cuda.source`` replaces ``#include "common.cuh"`` (line k + 1 of the file)
    with ``#line 1 "common.cuh"``, the header, and ``#line 1 "<file>"``, so the rest of the file
    would be numbered from 1 instead of k + 2. A ``#line 1`` that returns to a file already
    entered is renumbered to continue after the line it replaced; code does not change.
    """
    lines = code.split("\n")
    last: dict[str, tuple[int, int]] = {}  # file -> (index of its directive, number it set)
    current = None
    for i, ln in enumerate(lines):
        m = _LINE_DIRECTIVE.match(ln)
        if not m:
            continue
        number, file = int(m.group(1)), m.group(2)
        if current is not None and current != file:
            last[current + "\0end"] = (i, 0)
        if number == 1 and file in last and current != file:
            start, first = last[file]
            end = last[file + "\0end"][0]
            number = first + (end - start)
            lines[i] = f'#line {number} "{file}"'
        last[file] = (i, number)
        current = file
    return "\n".join(lines)


_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([^;\[]*?)(\w+)\s*\[\s*\]\s*;"
)


def _dynamic_shared(code: str) -> str:
    # `extern __shared__ T buf[];` names the launch's dynamic shared memory: bind it to the
    # emulator's per-block buffer (the one rewrite of kernel text; it keeps lines in place).
    return _EXTERN_SHARED.sub(
        lambda m: (
            f"{m.group(1)}(&{m.group(2)})[] = *reinterpret_cast<{m.group(1)}(*)[]>"
            f"(gg_emu_dyn_shared());"
        ),
        code,
    )


def translation_unit(code: str, display: str, scan: bool) -> str:
    body = _dynamic_shared(fix_line_directives(f'#line 1 "{display}"\n{code}'))
    return body + "\n" if scan else f'#include "{HEADER}"\n{body}\n'


def _line_map(text: str) -> list[tuple[str, int]]:
    """For each line of ``text`` (0-based), the (file, line) its #line directives give it."""
    out, file, line = [], "<text>", 1
    for ln in text.split("\n"):
        m = _LINE_DIRECTIVE.match(ln)
        if m:
            out.append((file, line))
            file, line = m.group(2), int(m.group(1))
            continue
        out.append((file, line))
        line += 1
    return out


# ----------------------------------------------------------------------------- scanning

_MARKER = re.compile(
    r'extern\s+"C"\s+gg_emu_global_marker\s+void\s+'
    r"(?:gg_emu_launch_bounds\s*\((?P<lb>[^()]*(?:\([^()]*\)[^()]*)*)\)\s*)?"
    r"(?P<name>\w+)\s*\((?P<params>[^()]*(?:\([^()]*\)[^()]*)*)\)"
)
_LINEMARK = re.compile(r'^# (\d+) "([^"]*)"')
_BOUND_EXPR = re.compile(r"^[\d\s+\-*/()]+$")


def _split_params(text: str) -> list[tuple[str, str]]:
    text = text.strip()
    if text in ("", "void"):
        return []
    params = []
    for p in (s.strip() for s in text.split(",")):
        m = re.match(r"^(.*?)(\w+)\s*$", p)
        if m and m.group(1).strip() and not m.group(1).strip().endswith(("const",)):
            params.append((" ".join(m.group(1).split()), m.group(2)))
        else:
            params.append((" ".join(p.split()), ""))
    return params


def _bound(expr: str | None) -> int | None:
    if not expr:
        return None
    first = expr.split(",")[0].strip()
    if not _BOUND_EXPR.match(first):
        return None
    try:
        return int(eval(first, {"__builtins__": {}}, {}))  # digits and + - * / ( ) only
    except (SyntaxError, ZeroDivisionError, ValueError):
        return None


def _spelled_at(tu: str, name: str) -> str | None:
    """file:line of the text that spells ``name``'s declaration inside a macro body, where
    token pasting (``relu_fwd_##sfx``) builds the name."""
    lines = tu.split("\n")
    where = _line_map(tu)
    i = 0
    while i < len(lines):
        m = re.match(r"\s*#\s*define\s+\w+\(([^)]*)\)", lines[i])
        if not m:
            i += 1
            continue
        params = [p.strip() for p in m.group(1).split(",") if p.strip()]
        j = i
        while lines[j].rstrip().endswith("\\") and j + 1 < len(lines):
            j += 1
        for k in range(i, j + 1):
            for tok in re.finditer(r"([\w#]*##[\w#]*)\s*\(", lines[k]):
                parts = [p.strip() for p in tok.group(1).split("##")]
                rx = "".join(r"\w+" if p in params else re.escape(p) for p in parts)
                if re.fullmatch(rx, name):
                    f, ln = where[k]
                    return f"{f}:{ln}"
        i = j + 1
    return None


def scan(code: str, display: str, options: tuple[str, ...] = ()) -> dict[str, KernelInfo]:
    """The extern "C" kernels of a source, found by preprocessing it with the scan macros."""
    tu = translation_unit(code, display, scan=True)
    cmd = [compiler(), "-E", "-std=c++17", "-DGG_EMU_SCAN", "-include", str(HEADER)]
    cmd += [*_pass_options(options), "-x", "c++", "-"]
    proc = subprocess.run(cmd, input=tu, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise CompileError(_diagnostics(display, proc.stderr))
    # Join the preprocessed text, remembering the source line each piece came from.
    pieces, file, line = [], display, 1
    for ln in proc.stdout.split("\n"):
        m = _LINEMARK.match(ln)
        if m:
            file, line = m.group(2), int(m.group(1))
            continue
        pieces.append((ln, file, line))
        line += 1
    text = "\n".join(p[0] for p in pieces)
    starts, pos = [], 0
    for p in pieces:
        starts.append(pos)
        pos += len(p[0]) + 1
    import bisect

    kernels: dict[str, KernelInfo] = {}
    for m in _MARKER.finditer(text):
        idx = bisect.bisect_right(starts, m.start()) - 1
        _, f, ln = pieces[idx]
        name = m.group("name")
        if name in kernels:
            continue
        kernels[name] = KernelInfo(
            name=name,
            params=_split_params(m.group("params")),
            file=f,
            line=ln,
            defined_at=_spelled_at(tu, name),
            launch_bound=_bound(m.group("lb")),
        )
    return kernels


# ----------------------------------------------------------------------------- compiling


def _pass_options(options) -> list[str]:
    """The RawModule options that mean something to g++: macros, include paths, -std."""
    out = []
    it = iter(options)
    for o in it:
        if o in ("-D", "-U", "-I", "--define-macro", "--undefine-macro", "--include-path"):
            value = next(it, "")
            flag = {"--define-macro": "-D", "--undefine-macro": "-U", "--include-path": "-I"}
            out.append(f"{flag.get(o, o)}{value}")
        elif o.startswith(("-D", "-U", "-I")):
            out.append(o)
        elif o.startswith(("--define-macro=", "--undefine-macro=", "--include-path=")):
            key, value = o.split("=", 1)
            out.append({"--define-macro": "-D", "--undefine-macro": "-U"}.get(key, "-I") + value)
        elif o.startswith(("-std=", "--std=")):
            out.append("-std=" + o.split("=", 1)[1])
    return out


def _diagnostics(display: str, stderr: str, limit: int = 40) -> str:
    keep = [
        ln
        for ln in stderr.splitlines()
        if "#pragma once in main file" not in ln and not ln.startswith("compilation terminated")
    ]
    shown = "\n".join(keep[:limit])
    more = f"\n... ({len(keep) - limit} more lines)" if len(keep) > limit else ""
    return f"g++ could not compile {display} for the CUDA emulator:\n{shown}{more}"


def _key(code: str, options) -> str:
    h = hashlib.sha256()
    for part in (_VERSION, HEADER.read_text(), code, repr(tuple(options)), repr(FLAGS)):
        h.update(part.encode())
        h.update(b"\0")
    h.update(_compiler_ids.get(compiler(), "").encode())
    return h.hexdigest()[:32]


def _nm(path: Path) -> tuple[list[tuple[int, int, str]], int]:
    """Static __shared__ variables (function-local statics outside the emulator's namespace)
    and the offset of the anchor symbol."""
    proc = subprocess.run(
        ["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise EmulatorUnavailable(f"nm (binutils) failed on {path}: {proc.stderr.strip()[:300]}")
    shared, anchor = [], None
    for ln in proc.stdout.splitlines():
        parts = ln.split()
        local_static = len(parts) == 4 and parts[3].startswith("_ZZ")
        if local_static and not parts[3].startswith("_ZZN6gg_emu"):
            if parts[2] in "bBdDuV":
                shared.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
        elif len(parts) >= 3 and parts[-1] == "gg_emu_dyn_shared":
            anchor = int(parts[0], 16)
    if anchor is None:
        raise CompileError(f"{path}: the emulator's anchor symbol is missing")
    return shared, anchor


def build(code: str, options=()) -> Built:
    """Compile (or load from the cache) one kernel source. Thread-safe."""
    options = tuple(options)
    compiler()
    key = _key(code, options)
    with _lock:
        hit = _built.get(key)
    if hit is not None:
        return hit
    cache = Path(settings.cache_dir)
    so_path, meta_path = cache / f"{key}.so", cache / f"{key}.json"
    display = display_name(code)
    built = _load_cached(key, so_path, meta_path)
    if built is None:
        cache.mkdir(parents=True, exist_ok=True)
        kernels = scan(code, display, options)
        tu = translation_unit(code, display, scan=False)
        tu += f'#line 1 "{ENTRIES_FILE}"\n' + "".join(f"GG_EMU_ENTRY({k})\n" for k in kernels)
        with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as tmp:
            src = Path(tmp) / f"{key}.cpp"
            src.write_text(tu)
            out = Path(tmp) / f"{key}.so"
            cmd = [compiler(), *FLAGS, *_pass_options(options), str(src), "-o", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise CompileError(_diagnostics(display, proc.stderr))
            shared, anchor = _nm(out)
            meta = {
                "display": display,
                "kernels": {k: vars(v) for k, v in kernels.items()},
                "shared": shared,
                "anchor": anchor,
            }
            os.replace(out, so_path)  # atomic: a concurrent build of the same key is harmless
        tmp_meta = meta_path.with_suffix(f".{os.getpid()}.tmp")
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, meta_path)
        built = _load_cached(key, so_path, meta_path)
        if built is None:
            raise CompileError(f"{display}: the built object could not be loaded from {so_path}")
    with _lock:
        return _built.setdefault(key, built)


def _load_cached(key: str, so_path: Path, meta_path: Path) -> Built | None:
    if not (so_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    kernels = {k: KernelInfo(**v) for k, v in meta["kernels"].items()}
    return Built(
        key=key,
        display=meta["display"],
        so_path=so_path,
        kernels=kernels,
        shared_vars=[tuple(s) for s in meta["shared"]],
        anchor=meta["anchor"],
    )


def build_many(sources, jobs: int | None = None) -> list[Built]:
    """Build several (code, options) pairs in parallel (g++ runs in subprocesses)."""
    sources = list(sources)
    jobs = jobs or min(len(sources), os.cpu_count() or 1) or 1
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda s: build(s[0], s[1]), sources))


def load_library(built: Built) -> ctypes.CDLL:
    return ctypes.CDLL(str(built.so_path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
