"""The ``gpugrad`` command: ``gpugrad demo | info | train | bench`` (also ``python -m gpugrad``)."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

from .train.cli import add_train_parser


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
        from gpugrad.device import _probe_cuda

        print(f"CUDA: unavailable ({_probe_cuda()})")
    print(f"ops in the table: {len(gg.OPS)}")
    if args.ops:
        from .dispatch import format_what_runs_where

        print(format_what_runs_where())
    return 0


def _bench(args) -> int:
    from .benchmark import main

    return main(args)


def _add_bench(sub) -> None:
    bench = sub.add_parser(
        "bench",
        help="time training steps against hand-written NumPy and PyTorch (one process)",
        description="Time one training step (forward, softmax-CE, backward, SGD) of four MLP "
        "configs for gpugrad and its peers, interleaved in rounds, and print a markdown table.",
    )
    add = bench.add_argument
    add("--configs", default="tiny,mnist,wide,deep", help="comma-separated, default all four")
    add("--rounds", type=int, default=7, help="timing rounds (medians are reported), default 7")
    add("--threads", type=int, help="BLAS/OpenMP threads for every peer, default all CPUs")
    add("--json", help="also write the results to this JSON file")
    add("--no-memory", action="store_true", help="skip the peak-memory measurement")
    add("--kernels", action="store_true", help="time the CPU kernels against a large copy instead")
    add("--reps", type=int, default=20, help="repetitions per kernel (--kernels), default 20")
    bench.set_defaults(run=_bench)


def _check(args) -> int:
    import gpugrad as gg

    from . import checks

    devices = tuple(d.strip() for d in args.devices.split(",")) if args.devices else None
    if devices is None:
        if not gg.cuda_is_available():
            from .device import _probe_cuda

            print(
                f"gpugrad check: no GPU ({_probe_cuda()}); checking the CPU fast paths in "
                "float32 against float64 instead (--devices cpu,cpu)"
            )
            devices = ("cpu", "cpu")
        else:
            devices = ("cpu", "cuda")
    if len(devices) != 2:
        print("gpugrad check: --devices takes two devices, e.g. cpu,cuda", file=sys.stderr)
        return 2
    dtype = np.dtype(args.dtype)
    return checks.run(devices, dtype=dtype, rtol=args.rtol, atol=args.atol)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpugrad", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the seed example and a tiny MLP trained with raw tensors")
    demo.add_argument("--steps", type=int, default=500)
    demo.add_argument("--lr", type=float, default=0.5)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    info = sub.add_parser("info", help="versions, devices and the op table size")
    info.add_argument(
        "--ops", action="store_true", help="also print which implementation runs each op where"
    )
    info.set_defaults(run=_info)
    add_train_parser(sub)
    check = sub.add_parser(
        "check",
        help="crosscheck every op, loss and MLP: GPU float32 against CPU float64",
    )
    check.add_argument(
        "--devices", help="reference,checked (default cpu,cuda; cpu,cpu without GPU)"
    )
    check.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    check.add_argument("--rtol", type=float, default=1e-3)
    check.add_argument("--atol", type=float, default=1e-4)
    check.set_defaults(run=_check)
    _add_bench(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
