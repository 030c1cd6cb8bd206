"""The Numba CUDA kernels (gpugrad/numba_cuda.py) in Numba's CUDA simulator, against NumPy.

The simulator is chosen by NUMBA_ENABLE_CUDASIM=1 before Numba is imported, so the check runs
in a subprocess and reports its worst errors back as JSON. Sizes are small (the simulator runs
every thread in Python) but cover partial tiles, ignored rows and both dtypes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json
import numpy as np
from numba import config
assert config.ENABLE_CUDASIM, "the simulator is not on"
from gpugrad import fused, numba_cuda as nc

rng = np.random.default_rng(0)
out = {}
for dtype in ("float32", "float64"):
    errs = []
    for m, k, n in [(1, 1, 1), (17, 18, 20)]:
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        errs.append(float(np.abs(nc.matmul(a, b) - ref).max() / max(1.0, np.abs(ref).max())))
    out[f"matmul_{dtype}"] = max(errs)
    errs = []
    for n, c, reduction in [(2, 3, "sum"), (4, 40, "none"), (3, 70, "mean")]:
        logits = (rng.standard_normal((n, c)) * 4).astype(dtype)
        targets = rng.integers(0, c, n)
        targets[0] = -100
        loss, d = nc.cross_entropy(logits, targets, reduction=reduction)
        ref, extra = fused.cross_entropy.fwd(np, logits.astype(np.float64), targets,
                                             reduction=reduction)
        errs.append(float(np.abs(np.asarray(loss, np.float64) - ref).max()))
        errs.append(float(np.abs(d - extra["dlogits"]).max()))
    out[f"xent_{dtype}"] = max(errs)
print("RESULT", json.dumps(out))
"""


def test_numba_cuda_kernels_match_numpy_in_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    errs = json.loads(line[len("RESULT ") :])
    # float32 against a float64 reference: sums of <= 18 products / 70 exps, far below 1e-5.
    assert errs["matmul_float32"] < 1e-5, errs
    assert errs["xent_float32"] < 1e-5, errs
    assert errs["matmul_float64"] < 1e-12, errs
    assert errs["xent_float64"] < 1e-12, errs
