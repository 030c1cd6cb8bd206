"""Settings of the emulated device, from the environment at import and changeable at run time.

GPUGRAD_EMU_ORDERS  how many thread/block orders each launch runs under (default 3: forward,
                    reverse, one seeded shuffle; more adds shuffles with further seeds; 1 runs
                    forward only). Outputs must agree bit for bit between orders.
GPUGRAD_EMU_SEED    the first shuffle's seed (default 0).
GPUGRAD_EMU_SMS     the multiprocessor count the device reports (default 4; launchers size grids
                    from it, so 1 makes every grid-stride loop loop).
GPUGRAD_EMU_MEMORY  device memory in bytes (default 8 GiB); allocations past it raise
                    cupy.cuda.memory.OutOfMemoryError as on a GPU.
GPUGRAD_EMU_CACHE   where compiled kernels are kept (default: $XDG_CACHE_HOME or ~/.cache, then
                    gpugrad/cuda-emulator).
CXX                 the C++ compiler (default g++).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={raw!r}: must be at least {minimum}")
    return value


def default_cache_dir() -> Path:
    if os.environ.get("GPUGRAD_EMU_CACHE"):
        return Path(os.environ["GPUGRAD_EMU_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpugrad" / "cuda-emulator"


@dataclass
class Settings:
    orders: int = field(default_factory=lambda: _int_env("GPUGRAD_EMU_ORDERS", 3, 1))
    seed: int = field(default_factory=lambda: _int_env("GPUGRAD_EMU_SEED", 0, 0))
    sm_count: int = field(default_factory=lambda: _int_env("GPUGRAD_EMU_SMS", 4, 1))
    memory_bytes: int = field(default_factory=lambda: _int_env("GPUGRAD_EMU_MEMORY", 8 << 30, 0))
    cache_dir: Path = field(default_factory=default_cache_dir)
    compiler: str = field(default_factory=lambda: os.environ.get("CXX") or "g++")

    def order_list(self) -> list[tuple[str, int, int]]:
        """(name, order code, seed) for each run of a launch: forward, reverse, shuffles."""
        runs = [("forward", 0, 0), ("reverse", 1, 0)]
        runs += [(f"shuffled (seed {self.seed + i})", 2, self.seed + i) for i in range(self.orders)]
        return runs[: self.orders]


settings = Settings()
