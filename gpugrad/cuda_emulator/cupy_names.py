"""Write ``cupy_names.json``: the public names of real CuPy's modules and classes.

The emulated ``cupy`` answers exactly these names: one CuPy has and the emulator implements
works, one CuPy has and the emulator lacks raises NotEmulatedError, any other raises
AttributeError as on a GPU machine. Regenerate after a CuPy upgrade, with real CuPy installed
(no GPU needed: CuPy imports without one):

    python gpugrad/cuda_emulator/cupy_names.py > gpugrad/cuda_emulator/cupy_names.json
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings

MODULES = (
    "cupy",
    "cupy.cuda",
    "cupy.cuda.runtime",
    "cupy.cuda.driver",
    "cupy.cuda.memory",
    "cupy.cuda.compiler",
    "cupy.linalg",
    "cupy.random",
    "cupy.fft",
    "cupy.testing",
    "cupyx",
    "cupyx.scipy",
    "cupyx.scipy.special",
    "cupyx.distributed",
)
CLASSES = (
    "cupy.ndarray",
    "cupy.ufunc",
    "cupy.RawModule",
    "cupy.RawKernel",
    "cupy.cuda.Device",
    "cupy.cuda.MemoryPointer",
    "cupy.cuda.MemoryPool",
    "cupy.cuda.Stream",
    "cupy.cuda.Event",
)
KEEP_DUNDERS = {"__version__"}


def _public(names):
    return sorted(
        n for n in names if not (n.startswith("__") and n.endswith("__")) or n in KEEP_DUNDERS
    )


def _resolve(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        parent, _, attr = name.rpartition(".")  # e.g. cupy.cuda.driver: an attribute
        return getattr(_resolve(parent), attr)


def collect() -> dict:
    warnings.simplefilter("ignore")  # CuPy warns about libraries (NCCL, cuTENSOR) it cannot load
    import cupy

    out = {"cupy_version": cupy.__version__, "modules": {}, "classes": {}, "int_constants": {}}
    for name in MODULES:
        try:
            mod = _resolve(name)
        except Exception as e:  # a submodule whose library is missing: record why
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        out["modules"][name] = _public(dir(mod))
        consts = {
            n: int(getattr(mod, n))
            for n in dir(mod)
            if not n.startswith("_") and type(getattr(mod, n, None)) is int
        }
        if consts and name.startswith("cupy.cuda."):
            out["int_constants"][name] = consts
    for path in CLASSES:
        mod, _, cls = path.rpartition(".")
        out["classes"][path] = sorted(dir(getattr(_resolve(mod), cls)))
    return out


if __name__ == "__main__":
    json.dump(collect(), sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")
