"""A physics-informed MLP: solve u''(x) = -pi^2 sin(pi x) on [0, 1], u(0) = u(1) = 0.

The network u(x) never sees the solution (sin(pi x)); its loss is the residual of the equation,
computed from its own second derivative with gg.grad(create_graph=True), plus the boundary
values. Run: python examples/pinn.py
"""

import math
import time

import numpy as np

import gpugrad as gg
from gpugrad import nn, optim


def train(steps=2000, seed=0, log=print):
    gg.manual_seed(seed)
    model = nn.MLP([1, 32, 32, 1], activation="tanh", dtype=gg.float64)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    grid = np.linspace(0, 1, 64).reshape(-1, 1)
    x = gg.tensor(grid, requires_grad=True)
    rhs = gg.tensor(-(math.pi**2) * np.sin(math.pi * grid))
    ends = gg.tensor(np.array([[0.0], [1.0]]))
    start = time.perf_counter()
    for step in range(steps):
        u = model(x)
        (du,) = gg.grad(u.sum(), x, create_graph=True)  # du/dx at every point
        (d2u,) = gg.grad(du.sum(), x, create_graph=True)  # d2u/dx2
        loss = ((d2u - rhs) ** 2).mean() + (model(ends) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps - 1:
            log(f"step {step:5d}  loss {loss.item():.3e}")
    seconds = time.perf_counter() - start
    test = np.linspace(0, 1, 201).reshape(-1, 1)
    with gg.no_grad():
        error = np.abs(model(gg.tensor(test)).numpy() - np.sin(math.pi * test)).max()
    log(f"max |u - sin(pi x)| on 201 points: {error:.2e} after {steps} steps, {seconds:.1f} s")
    return error, seconds


if __name__ == "__main__":
    train()
