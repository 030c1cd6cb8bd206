"""The hand-written NumPy peer of ``gpugrad bench``: an MLP with manual backprop.

The code lives in ``gpugrad/benchmark/peers.py`` (``NumpyPeer``) so that an installed package
can run the report; this file runs it in a worker process of its own, after checking its first
step against gpugrad's (in another worker):

    python bench/numpy_mlp.py --config mnist --steps 20
"""

from __future__ import annotations

import argparse
import os

from gpugrad.benchmark.problems import CONFIGS
from gpugrad.benchmark.steps import verify, workers

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mnist", choices=tuple(CONFIGS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    cfg = CONFIGS[args.config]
    with workers(["gpugrad", "numpy"], args.threads) as pool:
        verify(cfg, pool)
        pool["numpy"].call("build", config=cfg.to_dict())
        ms = pool["numpy"].call("time", steps=args.steps) / args.steps * 1e3
        loss = pool["numpy"].call("check", config=cfg.to_dict(), seed=0)["loss"]
    print(f"{cfg.name}: {ms:.3f} ms per step (first step checked; loss {loss:.4f})")
