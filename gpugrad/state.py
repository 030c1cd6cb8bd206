"""Process-wide switches that every layer reads: global config, grad mode, anomaly mode.

This module imports nothing from gpugrad, so any module may read it without creating an import
cycle. The public faces of these flags live elsewhere (``gg.config``, ``gg.no_grad``,
``gg.detect_anomaly``); this is only where their values are kept.
"""

from __future__ import annotations

import numpy as np


class config:
    """Global switches. ``kernels``: use the device fast paths (Numba/CUDA) where they exist.
    ``matmul``: "cublas" (the default) or "custom" (gpugrad's tiled SGEMM) on the GPU.
    ``deterministic``: bitwise-reproducible results only; an op whose only GPU path sums with
    atomics (the order of float additions varies run to run) takes a deterministic path where
    one exists and raises RuntimeError where none does (see ``nondeterministic``)."""

    kernels = True
    matmul = "cublas"
    deterministic = False


def nondeterministic(what: str) -> None:
    """Called by a code path that is not bitwise reproducible: raise if determinism is on."""
    if config.deterministic:
        raise RuntimeError(
            f"{what} is nondeterministic (it sums with atomicAdd on the GPU, so the order of "
            "float additions varies between runs) and gg.config.deterministic is True; set it "
            "to False to allow it, or run this op on the CPU"
        )


class grad_mode:
    """Whether ops record the graph (``gg.no_grad`` turns it off)."""

    enabled = True


class anomaly:
    """Whether anomaly mode (``gg.detect_anomaly``) checks every value for NaN/Inf."""

    enabled = False


class random:
    """gpugrad's generator (``gg.manual_seed`` replaces it): parameter initialisation, the
    random factories and dropout masks all draw from it."""

    generator = np.random.default_rng()


# Callables hook(op, out) run after every forward (gg.crosscheck records values through it).
forward_hooks: list = []

# The recorder of gg.cpu_graph while it captures a step (cpu_replay._Recorder), else None.
capture = None
