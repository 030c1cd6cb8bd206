"""``gpugrad bench``: training-step timings against hand-written NumPy and PyTorch, in one process.

One step is what a training loop does per batch: forward through an MLP, softmax
cross-entropy, backward, plain SGD. Four configs (float32):

- tiny:  batch 64,   64-128-128-10, ReLU   (Python overhead dominates)
- mnist: batch 256,  784-512-512-10, ReLU
- wide:  batch 1024, 1024-2048-2048-10, ReLU (BLAS dominates)
- deep:  batch 128,  32 hidden layers of 256, tanh (many small ops)

Peers run in the same process from the same initial weights and data: ``numpy`` is a
hand-written MLP with manual backprop and preallocated buffers (the best plain NumPy we can
write), ``torch`` is PyTorch eager with ``torch.optim.SGD`` when it is installed. Before any
timing, one step of every peer is checked against gpugrad's (loss and updated weights). Timing
runs in rounds; each round runs every peer in turn (the order rotates) for a fixed number of
steps, so load from other processes hits all peers alike; the table reports medians over
rounds. BLAS and OpenMP thread pools are pinned to the same count for every peer (threadpoolctl
when installed, and ``torch.set_num_threads``).

Memory: after timing, each peer is built again from nothing and runs two steps while
tracemalloc (NumPy's allocations, so gpugrad and the NumPy peer) and the kernel's peak-RSS
counter (``/proc/self/clear_refs``, every peer) watch; both are reported above the level before
the model existed, so they include parameters, gradients and activations.

    gpugrad bench                          # all four configs, markdown table
    gpugrad bench --configs tiny,deep --rounds 5 --json out.json
    gpugrad bench --kernels                # Numba kernels: GB/s against a large copy
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass

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


# ----------------------------------------------------------------------------- peers


class GpugradPeer:
    """The user path: ``nn.MLP`` (Linear + activation fused), ``F.cross_entropy``, ``SGD``."""

    name = "gpugrad"

    def __init__(self, cfg, x, y, layers, device="cpu"):
        import gpugrad as gg
        import gpugrad.functional as F
        from gpugrad import nn, optim

        self.model = nn.MLP(cfg.sizes, activation=cfg.activation)
        linears = [m for m in self.model if isinstance(m, nn.Linear)]
        for lin, (w, b) in zip(linears, layers, strict=True):
            lin.weight.data[...] = w
            lin.bias.data[...] = b
        self.model.to(device)
        self.opt = optim.SGD(self.model.parameters(), lr=cfg.lr)
        self.x, self.y = gg.tensor(x, device=device), gg.tensor(y, device=device)
        self.cross_entropy = F.cross_entropy
        self.last_loss = None

    def step_on(self, x, y):
        """One training step on a batch; returns the loss (the function a CUDA graph captures)."""
        loss = self.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def step(self):
        self.last_loss = self.step_on(self.x, self.y)

    def loss(self) -> float:
        return float(self.last_loss.item())

    def weights(self):
        return [p.numpy() for p in self.model.parameters()]


class NumpyPeer:
    """A hand-written NumPy MLP: manual backprop, every buffer allocated once, in place updates.

    Forward keeps each layer's output (B, O); backward turns dlogits into dW = dz.T @ h,
    db = dz.sum(0), dh = dz @ W, then applies the activation's derivative from the saved output
    in place. SGD subtracts lr * dW after dh is computed from the old W.
    """

    name = "numpy"

    def __init__(self, cfg, x, y, layers):
        self.x, self.y = x, y
        self.lr = np.float32(cfg.lr)
        self.tanh = cfg.activation == "tanh"
        self.w = [w.copy() for w, _ in layers]
        self.b = [b.copy() for _, b in layers]
        n = cfg.batch
        self.h = [np.empty((n, w.shape[0]), np.float32) for w in self.w]  # layer outputs
        self.dh = [np.empty((n, w.shape[1]), np.float32) for w in self.w]  # grads of inputs
        self.dw = [np.empty_like(w) for w in self.w]
        self.db = [np.empty_like(b) for b in self.b]
        self.tmp = [np.empty((n, w.shape[1]), np.float32) for w in self.w]
        self.rows = np.arange(n)
        self.mask = [np.empty((n, w.shape[1]), bool) for w in self.w]
        self.last_loss = 0.0

    def step(self):
        h, w, b, last = self.h, self.w, self.b, len(self.w) - 1
        inp = self.x
        for i in range(len(w)):
            np.matmul(inp, w[i].T, out=h[i])
            h[i] += b[i]
            if i < last:
                if self.tanh:
                    np.tanh(h[i], out=h[i])
                else:
                    np.maximum(h[i], 0, out=h[i])
            inp = h[i]
        # softmax cross-entropy, mean over the batch; dz = (softmax - onehot) / B
        z = h[last]
        n = z.shape[0]
        z -= z.max(axis=1, keepdims=True)
        picked = z[self.rows, self.y]
        np.exp(z, out=z)
        sums = z.sum(axis=1, keepdims=True)
        self.last_loss = float(np.mean(np.log(sums[:, 0]) - picked))
        z /= sums
        z[self.rows, self.y] -= 1
        z *= np.float32(1.0 / n)
        dz = z
        for i in range(last, -1, -1):
            prev = h[i - 1] if i else self.x
            np.matmul(dz.T, prev, out=self.dw[i])
            np.sum(dz, axis=0, out=self.db[i])
            if i:
                dh = self.dh[i]
                np.matmul(dz, w[i], out=dh)
                if self.tanh:  # tanh' = 1 - out^2
                    t = self.tmp[i]
                    np.multiply(prev, prev, out=t)
                    np.subtract(1, t, out=t)
                    dh *= t
                else:  # relu' = out > 0
                    np.less_equal(prev, 0, out=self.mask[i])
                    np.copyto(dh, 0, where=self.mask[i])
                dz = dh
            self.dw[i] *= self.lr
            w[i] -= self.dw[i]
            self.db[i] *= self.lr
            b[i] -= self.db[i]

    def loss(self) -> float:
        return self.last_loss

    def weights(self):
        return [a for pair in zip(self.w, self.b, strict=True) for a in pair]


class TorchPeer:
    """PyTorch eager: nn.Sequential of Linear + activation, F.cross_entropy, optim.SGD."""

    name = "torch"

    def __init__(self, cfg, x, y, layers, device="cpu"):
        import torch

        mods = []
        for i, (w, b) in enumerate(layers):
            lin = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
            if i < len(layers) - 1:
                mods.append(torch.nn.Tanh() if cfg.activation == "tanh" else torch.nn.ReLU())
        self.model = torch.nn.Sequential(*mods).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr)
        self.x, self.y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        self.ce = torch.nn.functional.cross_entropy
        self.last_loss = None

    def step_on(self, x, y):
        loss = self.ce(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss

    def step(self):
        self.last_loss = self.step_on(self.x, self.y)

    def loss(self) -> float:
        return float(self.last_loss.item())

    def weights(self):
        return [p.detach().numpy() for p in self.model.parameters()]


def available_peers() -> list:
    peers = [GpugradPeer, NumpyPeer]
    try:
        import torch  # noqa: F401
    except ImportError:
        return peers
    return peers + [TorchPeer]


# ----------------------------------------------------------------------------- machine


def thread_limits(threads: int):
    """Pin BLAS and OpenMP pools (and PyTorch's) to ``threads``; returns a description."""
    parts = []
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(limits=threads)
        for info in threadpool_info():
            arch = f" {info['architecture']}" if info.get("architecture") else ""
            parts.append(f"{info['internal_api']}{arch} {info['num_threads']}")
    except ImportError:
        parts.append("threadpoolctl not installed: BLAS pools at their defaults")
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        parts.append(f"torch intra-op {torch.get_num_threads()}")
    return "threads: " + ", ".join(parts)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> str:
    import numba

    import gpugrad

    parts = [f"gpugrad {gpugrad.__version__}", f"python {platform.python_version()}"]
    parts += [f"numpy {np.__version__}", f"numba {numba.__version__}"]
    if "torch" in sys.modules:
        parts.append(f"torch {sys.modules['torch'].__version__}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- checking


def verify(cfg: Config, peers: list) -> None:
    """One step of every peer from the same start must give gpugrad's loss and weights."""
    x, y, layers = make_problem(cfg, seed=1)
    ref = GpugradPeer(cfg, x, y, layers)
    ref.step()
    for cls in peers:
        if cls is GpugradPeer:
            continue
        p = cls(cfg, x, y, layers)
        p.step()
        if not math.isclose(p.loss(), ref.loss(), rel_tol=1e-4, abs_tol=1e-5):
            raise AssertionError(f"{cfg.name}: {p.name} loss {p.loss()} != gpugrad {ref.loss()}")
        for k, (a, b) in enumerate(zip(p.weights(), ref.weights(), strict=True)):
            if not np.allclose(a, b, rtol=1e-4, atol=1e-5):
                err = float(np.max(np.abs(a - b)))
                raise AssertionError(
                    f"{cfg.name}: {p.name} parameter {k} after one step differs from gpugrad's "
                    f"(max abs error {err:.2e})"
                )


# ----------------------------------------------------------------------------- timing


def _steps_per_round(peers, budget_s: float) -> int:
    """Steps per peer per round so that one round of every peer takes about ``budget_s``."""
    slowest = 0.0
    for p in peers:
        t0 = time.perf_counter()
        p.step()
        slowest = max(slowest, time.perf_counter() - t0)
    return max(1, min(200, int(budget_s / (slowest * len(peers)))))


def time_config(cfg: Config, peer_classes, rounds: int, round_s: float) -> dict:
    """Median ms per step of each peer, interleaved in rounds with a rotating order."""
    x, y, layers = make_problem(cfg)
    peers = [cls(cfg, x, y, layers) for cls in peer_classes]
    for p in peers:  # warm-up: kernels compiled or loaded, buffers and caches settled
        for _ in range(2):
            p.step()
    steps = _steps_per_round(peers, round_s)
    samples = {p.name: [] for p in peers}
    for r in range(rounds):
        order = peers[r % len(peers) :] + peers[: r % len(peers)]
        for p in order:
            # Worker threads (OpenMP's, OpenBLAS's) spin for a while after their last parallel
            # region; a pause lets the previous peer's go to sleep before this one is timed.
            time.sleep(0.02)
            t0 = time.perf_counter()
            for _ in range(steps):
                p.step()
            samples[p.name].append((time.perf_counter() - t0) / steps * 1e3)
    return {
        "steps_per_round": steps,
        "ms": {k: statistics.median(v) for k, v in samples.items()},
        "ms_min": {k: min(v) for k, v in samples.items()},
        "samples_ms": samples,
    }


# ----------------------------------------------------------------------------- memory

try:
    _libc = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: RSS numbers still come, only less tight
    _libc = None


def _rss_kb() -> tuple[int, int] | None:
    """(current RSS, peak RSS since the last reset) in KiB from /proc, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            text = f.read()
    except OSError:
        return None
    rss = re.search(r"VmRSS:\s+(\d+)", text)
    hwm = re.search(r"VmHWM:\s+(\d+)", text)
    return (int(rss.group(1)), int(hwm.group(1))) if rss and hwm else None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure_memory(cfg: Config, cls) -> dict:
    """Peak MiB above the level before the peer existed, over building it and two steps."""
    x, y, layers = make_problem(cfg)
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)  # hand freed heap back, so the baseline is what is really in use
    before = _rss_kb()
    rss_ok = before is not None and _reset_peak_rss()
    tracemalloc.start()
    peer = cls(cfg, x, y, layers)
    for _ in range(2):
        peer.step()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = _rss_kb() if rss_ok else None
    del peer
    out = {"traced_mib": traced_peak / 2**20 if cls is not TorchPeer else None}
    out["rss_mib"] = (after[1] - before[0]) / 1024 if after else None
    return out


# ----------------------------------------------------------------------------- the report


def run(
    configs,
    rounds: int = 7,
    round_s: float = 1.5,
    threads: int | None = None,
    memory: bool = True,
    log=print,
) -> dict:
    """Verify, time and measure every config; returns the results as a dict (see --json)."""
    threads = threads or os.cpu_count() or 1
    peers = available_peers()
    if TorchPeer in peers:
        import torch  # noqa: F401  (imported before the thread pools are pinned)
    setup = thread_limits(threads)
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{cpu_name()}, {os.cpu_count()} logical CPUs",
        "versions": versions(),
        "threads": setup,
        "rounds": rounds,
        "configs": {},
    }
    log(f"# gpugrad bench | {result['machine']} | {result['versions']}")
    log(f"# {setup} | {rounds} rounds, medians")
    for name in configs:
        cfg = CONFIGS[name]
        t0 = time.perf_counter()
        verify(cfg, peers)
        row = time_config(cfg, peers, rounds, round_s)
        row.update(config=cfg.describe(), batch=cfg.batch, gflop=cfg.flops() / 1e9)
        if memory:
            row["memory"] = {cls.name: measure_memory(cfg, cls) for cls in peers}
        result["configs"][name] = row
        ms = row["ms"]
        log(
            f"# {name}: "
            + ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items())
            + f" ({row['steps_per_round']} steps/round, {time.perf_counter() - t0:.1f} s)"
        )
    return result


def _mib(v):
    return "-" if v is None else f"{v:.0f}"


def table(result: dict) -> str:
    """The results as one markdown table."""
    names = [n for n in ("numpy", "torch") if any(n in r["ms"] for r in result["configs"].values())]
    head = ["config", "batch", "layers", "device", "gpugrad ms"]
    head += [f"{n} ms" for n in names] + [f"gpugrad / {n}" for n in names]
    head += ["gpugrad GFLOP/s", "peak MiB gpugrad (traced / RSS)"]
    head += [f"peak MiB {n} (RSS)" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in result["configs"].items():
        ms = r["ms"]
        g = ms["gpugrad"]
        cells = [name, str(r["batch"]), r["config"], "cpu", f"{g:.3f}"]
        cells += [f"{ms[n]:.3f}" if n in ms else "-" for n in names]
        cells += [f"{g / ms[n]:.2f}" if n in ms else "-" for n in names]
        cells.append(f"{r['gflop'] / (g / 1e3):.1f}")
        mem = r.get("memory", {})
        gm = mem.get("gpugrad", {})
        cells.append(f"{_mib(gm.get('traced_mib'))} / {_mib(gm.get('rss_mib'))}")
        cells += [_mib(mem.get(n, {}).get("rss_mib")) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- kernels


def copy_ceiling(nbytes: int = 256 << 20, reps: int = 5) -> float:
    """GB/s of a large array copy (read + write counted): the memory-bound kernels' ceiling."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9


def kernel_cases(scale: int = 1):
    """(name, bytes moved, run) for every Numba kernel of the CPU backend, checked first.

    Bytes are the fewest a kernel must move: each input read once and each output written once.
    """
    from .backends import cpu, cpu_act, cpu_norm, cpu_optim
    from .fused import (
        bias_act,
        binary_cross_entropy_with_logits,
        cross_entropy,
        layer_norm,
        mse_loss,
    )
    from .ops import gelu, silu

    rng = np.random.default_rng(0)
    cases = []
    n, c = 4096 * scale, 100
    logits = rng.standard_normal((n, c), dtype=np.float32)
    targets = rng.integers(0, c, n)
    cases.append(
        (
            f"cross_entropy fwd+grad {n}x{c}",
            2 * logits.nbytes + targets.nbytes,
            lambda: cpu.cross_entropy(np, logits, targets),
            lambda: cross_entropy.fwd(np, logits, targets),
        )
    )
    m = (1 << 20) * scale
    s = rng.standard_normal(m, dtype=np.float32)
    t = rng.random(m, dtype=np.float32)
    for name, fast, ref in (
        (
            "binary_cross_entropy_with_logits",
            cpu.binary_cross_entropy_with_logits,
            binary_cross_entropy_with_logits,
        ),
        ("mse_loss", cpu.mse_loss, mse_loss),
    ):
        cases.append(
            (f"{name} {m}", 4 * s.nbytes, lambda f=fast: f(np, s, t), lambda r=ref: r.fwd(np, s, t))
        )
    rows, cols = 1024 * scale, 1024
    z = rng.standard_normal((rows, cols), dtype=np.float32)
    b = rng.standard_normal(cols, dtype=np.float32)
    dout = rng.standard_normal((rows, cols), dtype=np.float32)
    for act in ("relu", "leaky_relu", "identity"):
        cases.append(
            (
                f"bias_act fwd {act} {rows}x{cols}",
                2 * z.nbytes,
                lambda a=act: cpu.bias_act(np, z, b, activation=a),
                lambda a=act: bias_act.fwd(np, z, b, activation=a),
            )
        )
    for act in ("relu", "tanh", "sigmoid"):
        out = bias_act.fwd(np, z, b, activation=act)
        cases.append(
            (
                f"bias_act bwd {act} {rows}x{cols}",
                3 * z.nbytes,
                lambda a=act, o=out: cpu.bias_act_backward(np, dout, o, a, 0.01, (True, True)),
                lambda a=act, o=out: bias_act.bwd(np, dout, o, a, 0.01, (True, True)),
            )
        )
    # The layer kernels: GELU and SiLU where Numba beats NumPy (float32 GELU, float64 SiLU),
    # LayerNorm (its backward in float64: the float32 reference's column sums over 1024 rows
    # are off by ~1e-4, beyond the check here), cross-entropy with weights and smoothing.
    z64, b64, d64, w64 = (a.astype(np.float64) for a in (z, b, dout, rng.standard_normal(cols)))
    w32 = w64.astype(np.float32)
    st = layer_norm.fwd(np, z64, w64, b64)[1]
    ln = (st["mean"], st["rstd"], z64, w64, b64, 1, 1e-5, (True, True, True))
    cw = rng.uniform(0.5, 2.0, c).astype(np.float32)
    ce = {"weight": cw, "label_smoothing": 0.1}
    for act, zz, bb, dd in (("gelu", z[:256], b, dout[:256]), ("silu", z64[:256], b64, d64[:256])):
        bw = (bias_act.fwd(np, zz, bb, activation=act), act, 0.01, (True, True), zz, bb)
        cases += [
            (f"bias_act fwd {act} 256x{cols} {zz.dtype}", 2 * zz.nbytes,
             lambda a=act, z=zz, b=bb: cpu.bias_act(np, z, b, activation=a),
             lambda a=act, z=zz, b=bb: bias_act.fwd(np, z, b, activation=a)),
            (f"bias_act bwd {act} 256x{cols} {zz.dtype}", 3 * zz.nbytes,
             lambda d=dd, a=bw: cpu.bias_act_backward(np, d, *a),
             lambda d=dd, a=bw: bias_act.bwd(np, d, *a)),
        ]  # fmt: skip
    x1, x2 = z[:256].reshape(-1), z64[:256].reshape(-1)
    cases += [
        (f"gelu fwd {x1.size}", 2 * x1.nbytes, lambda: cpu_act.gelu(np, x1),
         lambda: gelu.fwd(np, x1)),
        (f"silu fwd {x2.size} float64", 2 * x2.nbytes, lambda: cpu_act.silu(np, x2),
         lambda: silu.fwd(np, x2)),
        (f"layer_norm fwd {rows}x{cols}", 2 * z.nbytes, lambda: cpu_norm.layer_norm(np, z, w32, b),
         lambda: layer_norm.fwd(np, z, w32, b)),
        (f"layer_norm bwd {rows}x{cols} float64", 3 * z64.nbytes,
         lambda: cpu_norm.layer_norm_backward(np, d64, *ln), lambda: layer_norm.bwd(np, d64, *ln)),
        (f"cross_entropy weight+label_smoothing {n}x{c}", 2 * logits.nbytes + targets.nbytes,
         lambda: cpu.cross_entropy(np, logits, targets, **ce),
         lambda: cross_entropy.fwd(np, logits, targets, **ce)),
    ]  # fmt: skip
    from numba.typed import List

    k = (1 << 20) * scale
    p0 = rng.standard_normal(k, dtype=np.float32)
    g = rng.standard_normal(k, dtype=np.float32)
    offsets = np.array([0, k], np.int64)
    for momentum in (0.0, 0.9):
        hp = np.array([[1.0, 0.01, momentum, 0.0, 0.0, 0.0, 0.0, 0.0]])
        p = p0.copy()
        buf = np.zeros(k, np.float32)
        params = List([p])
        moved = (12 if momentum == 0 else 20) * k
        cases.append(
            (
                f"sgd_step momentum={momentum} {k}",
                moved,
                lambda pa=params, bu=buf, h=hp: cpu_optim.sgd_step(pa, g, bu, offsets, h),
                None,
            )
        )
    p = p0.copy()
    m1, v1 = np.zeros(k, np.float32), np.zeros(k, np.float32)
    hp = np.array([[1.0, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0.0, 0.0, 0.0, 1.0]])
    params = List([p])
    cases.append(
        (
            f"adam_step {k}",
            28 * k,
            lambda: cpu_optim.adam_step(params, g, m1, v1, m1[:0], offsets, hp),
            None,
        )
    )
    return cases


def _same(a, b) -> bool:
    if isinstance(a, tuple | list):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    if a is None or isinstance(a, float | int | str):
        return a == b or (isinstance(a, float) and math.isclose(a, b, rel_tol=1e-4))
    return np.allclose(a, b, rtol=1e-4, atol=1e-5)


def kernel_report(reps: int = 20, scale: int = 1, log=print) -> list[dict]:
    """Check every CPU kernel against its NumPy reference, then time it: GB/s vs a copy."""
    ceiling = copy_ceiling()
    log(f"# CPU kernels | {cpu_name()} | large-copy ceiling {ceiling:.1f} GB/s (read + write)")
    log("| kernel | ms | GB/s | % of copy | NumPy reference ms |")
    log("|---|---|---|---|---|")
    rows = []
    for name, nbytes, fast, ref in kernel_cases(scale):
        fast()  # compile or load from the cache
        if ref is not None and not _same(fast(), ref()):
            raise AssertionError(f"{name}: the Numba kernel differs from its NumPy reference")
        best = min(_timed(fast) for _ in range(reps))
        ref_ms = min(_timed(ref) for _ in range(max(3, reps // 4))) * 1e3 if ref else None
        gbs = nbytes / best / 1e9
        rows.append(
            {
                "kernel": name,
                "ms": best * 1e3,
                "gb_s": gbs,
                "ceiling_gb_s": ceiling,
                "reference_ms": ref_ms,
            }
        )
        ref_text = "-" if ref_ms is None else f"{ref_ms:.3f}"
        log(f"| {name} | {best * 1e3:.3f} | {gbs:.1f} | {gbs / ceiling:.0%} | {ref_text} |")
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- CLI


def main(args) -> int:
    """Entry point of ``gpugrad bench`` (arguments parsed by ``gpugrad.cli``)."""
    if args.kernels:
        rows = kernel_report(reps=args.reps)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"kernels": rows}, f, indent=1)
        return 0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"gpugrad bench: unknown config(s) {unknown}; choose from {list(CONFIGS)}")
    t0 = time.perf_counter()
    result = run(configs, rounds=args.rounds, threads=args.threads, memory=not args.no_memory)
    result["seconds"] = time.perf_counter() - t0
    print()
    print(table(result))
    print(f"\n{result['machine']} | {result['versions']} | {result['threads']}")
    took = result["seconds"]
    print(f"{result['date']} | {args.rounds} rounds, median ms per step | {took:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0
