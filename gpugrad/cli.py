"""The ``gpugrad`` command: ``gpugrad demo | info`` (also ``python -m gpugrad ...``)."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np


def _demo(args) -> int:
    import gpugrad as gg
    import gpugrad.functional as F

    print("1) The lecture's worked example: f = (x + y) * z at x=1, y=-3, z=4")
    x, y, z = (gg.tensor(v, requires_grad=True) for v in (1.0, -3.0, 4.0))
    f = (x + y) * z
    f.backward()
    print(
        f"   f = {f.item():g}; df/dx = {x.grad.item():g}, df/dy = {y.grad.item():g}, "
        f"df/dz = {z.grad.item():g}"
    )

    print("2) A 2-32-32-3 MLP written with raw tensors, trained by gradient descent on spirals")
    rng = np.random.default_rng(args.seed)
    n, classes = 100, 3
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1, n)
        theta = np.linspace(c * 4, (c + 1) * 4, n) + rng.normal(0, 0.2, n)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(n, c))
    data = gg.tensor(np.concatenate(xs).astype(np.float32))
    labels = gg.tensor(np.concatenate(ys).astype(np.int64))

    def init(fan_in, fan_out):
        bound = 1 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32)
        return gg.tensor(w, requires_grad=True), gg.zeros(fan_out, requires_grad=True)

    params = [*init(2, 32), *init(32, 32), *init(32, classes)]
    w1, b1, w2, b2, w3, b3 = params
    start = time.perf_counter()
    for step in range(args.steps + 1):
        h = F.relu(F.linear(data, w1, b1))
        h = F.relu(F.linear(h, w2, b2))
        loss = F.cross_entropy(F.linear(h, w3, b3), labels)
        for p in params:
            p.grad = None
        loss.backward()
        with gg.no_grad():
            for p in params:
                p -= args.lr * p.grad
        if step % (args.steps // 10) == 0:
            print(f"   step {step:4d}  loss {loss.item():.4f}")
    with gg.no_grad():
        h = F.relu(F.linear(F.relu(F.linear(data, w1, b1)), w2, b2))
        pred = F.linear(h, w3, b3).argmax(axis=1)
    accuracy = float((pred.numpy() == labels.numpy()).mean())
    print(
        f"   train accuracy {accuracy:.1%} after {args.steps} steps "
        f"({time.perf_counter() - start:.2f} s on the CPU)"
    )
    return 0


def _info(args) -> int:
    import gpugrad as gg

    print(f"gpugrad {gg.__version__} | Python {platform.python_version()} | numpy {np.__version__}")
    try:
        import numba

        print(f"numba {numba.__version__}")
    except ImportError:
        print("numba: not installed")
    if gg.cuda_is_available():
        print(f"CUDA: {gg.cuda_device_count()} device(s)")
    else:
        from gpugrad.backends import _probe_cuda

        print(f"CUDA: unavailable ({_probe_cuda()})")
    print(f"ops in the table: {len(gg.OPS)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpugrad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the seed example and a tiny MLP trained with raw tensors")
    demo.add_argument("--steps", type=int, default=500)
    demo.add_argument("--lr", type=float, default=0.5)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    info = sub.add_parser("info", help="versions, devices and the op table size")
    info.set_defaults(run=_info)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
