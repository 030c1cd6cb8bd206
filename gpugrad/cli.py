"""The ``gpugrad`` command: ``gpugrad demo | info | train | bench`` (also ``python -m gpugrad``)."""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np

from . import activations


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


def _train(args) -> int:
    from .train import run_cli

    options = {k: v for k, v in vars(args).items() if k not in ("command", "run")}
    return run_cli(options)


def _bench(args) -> int:
    from .benchmark import main

    return main(args)


def _add_bench(sub) -> None:
    bench = sub.add_parser(
        "bench",
        help="time training steps against hand-written NumPy and PyTorch (a process each)",
        description="Time one training step (forward, softmax-CE, backward, SGD) of four MLP "
        "configs for gpugrad (eager and gg.cpu_graph) and its peers, each in a worker process "
        "of its own, interleaved in rounds, and print a markdown table.",
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


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 128,64, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden sizes must be positive, got {text!r}")
    return sizes


def _add_train(sub) -> None:
    from .data import DATASETS

    # Every default is None here so that --resume can tell what was given explicitly; the
    # real defaults live in gpugrad.train.TrainConfig and are shown in the help.
    train = sub.add_parser(
        "train",
        help="train an MLP classifier (digits by default) with checkpoints, metrics and plots",
        description="Train an MLP classifier. With no arguments: digits, MLP 64-128-64-10, "
        "Adam lr 3e-3 with a cosine schedule, batch 64, 30 epochs, output in runs/digits.",
    )
    add = train.add_argument
    add("--dataset", choices=DATASETS, help="default: digits (bundled)")
    add("--data-dir", help="folder with the IDX files, or an .npz (mnist, fashion-mnist)")
    add("--hidden", type=_hidden_sizes, help="hidden layer sizes, default 128,64")
    add("--activation", choices=activations.HIDDEN, help="default relu")
    add("--loss", choices=("cross_entropy", "multi_margin", "mse"), help="default cross_entropy")
    add("--optimizer", choices=("sgd", "adam", "adamw"), help="default adam")
    add("--lr", type=float, help="learning rate, default 3e-3")
    add("--momentum", type=float, help="SGD momentum, default 0.9")
    add("--weight-decay", type=float, help="default 0 (adamw: 0.01)")
    add("--batch-size", type=int, help="default 64")
    add("--epochs", type=int, help="total epochs, default 30 (may be raised on --resume)")
    add("--scheduler", choices=("none", "step", "cosine"), help="default cosine")
    add("--val-fraction", type=float, help="share of train held out for validation, default 0.1")
    add("--device", help="auto (default), cpu, cuda or cuda:N")
    add("--seed", type=int, help="seeds initialisation and shuffling, default 0")
    add("--out", help="output folder, default runs/<dataset>")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    add("--no-plots", dest="plots", action="store_const", const=False, help="skip the PNGs")
    add("--quiet", action="store_const", const=True, help="no progress bar")
    add(
        "--distributed",
        nargs="?",
        const="auto",
        choices=("auto", "mpi", "nccl"),
        help="data parallel over the processes of mpirun -n N (or RANK/WORLD_SIZE): "
        "--batch-size is split between them; auto: NCCL on GPUs, MPI on the CPU",
    )
    train.set_defaults(run=_train)


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
    _add_train(sub)
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
