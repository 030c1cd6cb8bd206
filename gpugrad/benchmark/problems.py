"""The training problems every peer solves: four MLP configs, their data and initial weights.

One step is what a training loop does per batch: forward through an MLP, softmax
cross-entropy, backward, plain SGD (float32):

- tiny:  batch 64,   64-128-128-10, ReLU   (Python overhead dominates)
- mnist: batch 256,  784-512-512-10, ReLU
- wide:  batch 1024, 1024-2048-2048-10, ReLU (BLAS dominates)
- deep:  batch 128,  32 hidden layers of 256, tanh (many small ops)

This module imports only NumPy: the benchmark's worker processes load it without gpugrad.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Config:
    name: str
    batch: int
    sizes: tuple
    activation: str
    lr: float = 0.01

    def flops(self) -> int:
        """Matmul FLOPs of one step: 2BIO for the forward, dW and dx (none for the input)."""
        total = 0
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            total += (4 if i == 0 else 6) * self.batch * a * b
        return total

    def describe(self) -> str:
        hidden = self.sizes[1:-1]
        if len(hidden) > 4 and len(set(hidden)) == 1:
            return f"{self.sizes[0]}-{len(hidden)}x{hidden[0]}-{self.sizes[-1]} {self.activation}"
        return "-".join(map(str, self.sizes)) + f" {self.activation}"

    def to_dict(self) -> dict:
        """Plain values, for a worker process (which has no gpugrad to unpickle a Config)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        return cls(**{**d, "sizes": tuple(d["sizes"])})


CONFIGS = {
    "tiny": Config("tiny", 64, (64, 128, 128, 10), "relu"),
    "mnist": Config("mnist", 256, (784, 512, 512, 10), "relu"),
    "wide": Config("wide", 1024, (1024, 2048, 2048, 10), "relu"),
    "deep": Config("deep", 128, (256,) * 33 + (10,), "tanh"),
}


def make_problem(cfg: Config, seed: int = 0):
    """Inputs (B, I) float32, int64 targets, and PyTorch-style initial (W (O, I), b (O,))."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.batch, cfg.sizes[0]), dtype=np.float32)
    y = rng.integers(0, cfg.sizes[-1], cfg.batch).astype(np.int64)
    layers = []
    for a, b in zip(cfg.sizes[:-1], cfg.sizes[1:], strict=True):
        bound = 1.0 / math.sqrt(a)
        w = rng.uniform(-bound, bound, (b, a)).astype(np.float32)
        layers.append((w, rng.uniform(-bound, bound, b).astype(np.float32)))
    return x, y, layers
