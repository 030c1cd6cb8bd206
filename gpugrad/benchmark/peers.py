"""The peers of ``gpugrad bench``: gpugrad, a hand-written NumPy MLP, and PyTorch eager.

Each peer builds the same MLP from the same initial weights (``problems.make_problem``) and runs
one training step per ``step()``. A peer imports its own library only when it is built, so a
worker process that hosts one peer never loads another's library (the benchmark's isolation
test checks that): this module itself imports only NumPy.
"""

from __future__ import annotations

import importlib.util

import numpy as np


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

    def synchronize(self):
        import gpugrad as gg

        gg.cuda.synchronize()


class GpugradGraphPeer(GpugradPeer):
    """gpugrad's step captured once with ``gg.cpu_graph`` and replayed (the first step is the
    capture, which runs for real)."""

    name = "gpugrad-graph"

    def __init__(self, cfg, x, y, layers, device="cpu"):
        super().__init__(cfg, x, y, layers, device)
        self.captured = None

    def step(self):
        if self.captured is None:
            import gpugrad as gg

            capture = gg.cuda.graph if self.x.device != "cpu" else gg.cpu_graph
            self.captured = capture(self.step_on, self.x, self.y)
            self.last_loss = self.captured.first_outputs if self.x.device == "cpu" else None
            return
        self.last_loss = self.captured(self.x, self.y)


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
        return [p.detach().cpu().numpy() for p in self.model.parameters()]

    def synchronize(self):
        import torch

        torch.cuda.synchronize()


class TorchCompilePeer(TorchPeer):
    """PyTorch with the step compiled by ``torch.compile(mode="reduce-overhead")`` (CUDA graphs
    on a GPU); ``bench/gpu_bench.py`` times it, ``gpugrad bench`` does not."""

    name = "torch-compile"

    def __init__(self, cfg, x, y, layers, device="cpu"):
        import torch

        super().__init__(cfg, x, y, layers, device)
        self.compiled = torch.compile(self.step_on, mode="reduce-overhead")

    def step(self):
        self.last_loss = self.compiled(self.x, self.y)


PEERS = {
    cls.name: cls for cls in (GpugradPeer, GpugradGraphPeer, NumpyPeer, TorchPeer, TorchCompilePeer)
}
LIBRARIES = {  # what each one imports
    "gpugrad": "gpugrad",
    "gpugrad-graph": "gpugrad",
    "numpy": "numpy",
    "torch": "torch",
    "torch-compile": "torch",
}
CPU_PEERS = ("gpugrad", "gpugrad-graph", "numpy", "torch")  # what gpugrad bench runs


def available_peers(names=CPU_PEERS) -> list[str]:
    """Those of ``names`` whose library is installed, in order (found without importing)."""
    return [n for n in names if importlib.util.find_spec(LIBRARIES[n]) is not None]
