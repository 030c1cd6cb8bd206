"""The hand-written NumPy peer of ``gpugrad bench``: an MLP with manual backprop.

The code lives in ``gpugrad/benchmark.py`` (``NumpyPeer``) so that an installed package can run
the report; this file runs it on its own and checks it against gpugrad:

    python bench/numpy_mlp.py --config mnist --steps 20
"""

from __future__ import annotations

import argparse
import time

from gpugrad.benchmark import CONFIGS, GpugradPeer, NumpyPeer, make_problem, verify

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mnist", choices=tuple(CONFIGS))
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    cfg = CONFIGS[args.config]
    verify(cfg, [GpugradPeer, NumpyPeer])
    x, y, layers = make_problem(cfg)
    peer = NumpyPeer(cfg, x, y, layers)
    peer.step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        peer.step()
    ms = (time.perf_counter() - t0) / args.steps * 1e3
    print(f"{cfg.name}: {ms:.3f} ms per step, loss {peer.loss():.4f} (first step checked)")
