"""The ``gpugrad`` command (also ``python -m gpugrad``): demo, info, train, predict, check, bench.

Only this layer prints and chooses exit codes: 0 success, 1 a failure while running, 2 a usage
error (argparse's and ours: one line naming the option and the fix), 3 a diverged training run,
130 an interrupted one. An exception that reaches ``main`` is a bug in gpugrad: its traceback
is printed with a line asking to report it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from .train.cli import add_train_parser
from .train.predict import add_predict_parser


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
        from .runs_where import format_what_runs_where

        print(format_what_runs_where())
    return 0


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


def _check_devices(text: str | None, dtype: str) -> tuple[str, str]:
    """The (reference, checked) devices for ``--devices``; UsageError for ones absent here."""
    import gpugrad as gg

    from .device import _probe_cuda, parse_device

    if text is None:
        if gg.cuda_is_available():
            return "cpu", "cuda"
        print(
            f"gpugrad check: no GPU ({_probe_cuda()}); checking the CPU fast paths in "
            f"{dtype} against float64 instead (--devices cpu,cpu; --emulate checks the CUDA "
            "kernels on the emulated CUDA device)"
        )
        return "cpu", "cpu"
    devices = tuple(d.strip() for d in text.split(","))
    if len(devices) != 2:
        raise UsageError(f"--devices {text}: takes two devices, reference,checked: e.g. cpu,cuda")
    try:
        return tuple(parse_device(d) for d in devices)
    except (ValueError, RuntimeError) as e:  # an unknown name, or CUDA absent here
        raise UsageError(f"--devices {text}: {e}") from None


def _check(args) -> int:
    from . import checks

    try:
        if args.emulate:
            return _check_emulated(args)
        devices = _check_devices(args.devices, args.dtype)
    except UsageError as e:
        print(f"gpugrad check: {e}", file=sys.stderr)
        return 2
    from .backends.cuda import KernelError

    return checks.run(
        devices,
        dtype=np.dtype(args.dtype),
        rtol=args.rtol,
        atol=args.atol,
        caught=(KernelError,),  # a kernel that fails to compile or launch: a failing row
    )


EMULATED_NOTE = (
    "device cuda is gpugrad's emulated CUDA device, not a GPU: kernels/*.cu compiled by g++ and "
    "run on this machine's CPU, each launch under several thread orders with barriers, "
    "shuffles, argument packing and memory bounds checked. Agreement here says the kernels "
    "compute the right values; it says nothing about GPU timing, occupancy, the memory model "
    "across concurrent blocks or the GPU math library's last bits."
)


def _check_emulated(args) -> int:
    """``gpugrad check --emulate``: the CUDA side on the emulated device, on a machine without a
    GPU. Refused (UsageError) where a GPU is visible, which the emulated device would hide."""
    import gpugrad as gg

    from . import checks, cuda_emulator
    from .backends.cuda import KernelError

    if args.devices is not None and args.devices.replace(" ", "") not in ("cpu,cuda", "cpu,cuda:0"):
        raise UsageError(
            f"--emulate --devices {args.devices}: the emulated device is cuda, checked against "
            "the cpu; drop --devices (or give cpu,cuda)"
        )
    if gg.cuda_is_available():
        raise UsageError(
            f"--emulate: this machine has {gg.cuda_device_count()} CUDA GPU(s), which the "
            "emulated device would hide; run gpugrad check without --emulate to check the GPU "
            "itself (or set GPUGRAD_DEVICE=cpu to check the emulated device anyway)"
        )
    unavailable = cuda_emulator.available()
    if unavailable is not None:
        raise UsageError(f"--emulate: {unavailable}")
    settings = cuda_emulator.settings
    print(EMULATED_NOTE)
    with cuda_emulator.installed():
        start = time.perf_counter()
        cuda_emulator.build_kernels()
        print(
            f"kernels/*.cu built for the emulated device by {settings.compiler} in "
            f"{time.perf_counter() - start:.1f} s (cache {settings.cache_dir})"
        )
        launches = cuda_emulator.stats["launches"]
        code = checks.run(
            ("cpu", "cuda"),
            dtype=np.dtype(args.dtype),
            rtol=args.rtol,
            atol=args.atol,
            checked_label="cuda (emulated)",
            caught=(KernelError, cuda_emulator.EmulatorError),  # a fault: a failing row
        )
        print(
            f"{cuda_emulator.stats['launches'] - launches} kernel launches on the emulated "
            f"device, each run under {settings.orders} thread orders"
        )
        return code


class UsageError(Exception):
    """A mistake on the command line; the message is the line to print."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage block is what --help is for)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_check(sub) -> None:
    check = sub.add_parser(
        "check",
        help="crosscheck every op, loss and MLP between two devices (GPU against CPU float64)",
        description="Run every op family, every loss and an MLP per activation on the checked "
        "device in --dtype and on the CPU in float64 (fast paths off), compare every "
        "intermediate value and gradient, print a table, exit 1 when a case disagrees. "
        "Without a GPU, --emulate checks the CUDA kernels on gpugrad's emulated CUDA device.",
    )
    add = check.add_argument
    add(
        "--devices",
        metavar="REF,CHECKED",
        help="reference and checked device (default cpu,cuda; cpu,cpu without a GPU)",
    )
    add(
        "--emulate",
        action="store_true",
        help="check cpu,cuda with cuda the emulated CUDA device: kernels/*.cu compiled by g++ "
        "and run on the CPU, with barriers, shuffles and memory bounds checked (not a GPU: no "
        "timing, nor the GPU math library's last bits). Needs g++; refused where a GPU is "
        "visible, since it would hide it (GPUGRAD_DEVICE=cpu overrides)",
    )
    add(
        "--dtype",
        default="float32",
        choices=("float32", "float64"),
        help="the checked side's dtype (the reference is float64), default float32",
    )
    add("--rtol", type=float, default=1e-3, help="relative tolerance, default 1e-3")
    add("--atol", type=float, default=1e-4, help="absolute tolerance, default 1e-4")
    check.set_defaults(run=_check)


def build_parser() -> argparse.ArgumentParser:
    import gpugrad as gg

    parser = _Parser(
        prog="gpugrad",
        description="gpugrad: reverse-mode autodiff on NumPy and CuPy, and the tools around "
        "it. 'gpugrad COMMAND --help' describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"gpugrad {gg.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="the seed example and a tiny MLP trained with raw tensors")
    demo.add_argument("--steps", type=int, default=500, help="gradient steps, default 500")
    demo.add_argument("--lr", type=float, default=0.5, help="learning rate, default 0.5")
    demo.add_argument("--seed", type=int, default=0, help="seeds the data and weights, default 0")
    demo.set_defaults(run=_demo)
    info = sub.add_parser("info", help="versions, devices and the op table size")
    info.add_argument(
        "--ops", action="store_true", help="also print which implementation runs each op where"
    )
    info.set_defaults(run=_info)
    add_train_parser(sub)
    add_predict_parser(sub)
    _add_check(sub)
    _add_bench(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # gpugrad train saves and says more; elsewhere, just stop
        print(f"gpugrad {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        # The commands turn every user mistake into a message and an exit code; what arrives
        # here is a bug. Under a multi-process job, the distributed excepthook ends the job.
        import traceback

        import gpugrad as gg
        from gpugrad import distributed as dist

        if dist.world_size() > 1:
            raise
        traceback.print_exc()
        print(
            f"gpugrad {gg.__version__}: {type(e).__name__} above is a bug in gpugrad, not a "
            "mistake of yours; please report it with the command you ran and this output",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
