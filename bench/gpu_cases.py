"""The cases of ``bench/gpu_bench.py``: each GPU kernel, the CuPy composition it replaces, and
PyTorch's op for the same work, with the arrays every call reads and writes.

A case is built by a function of the array module (``xp``): NumPy on any machine, CuPy on a
GPU. Its byte count is never written by hand: ``traffic()`` adds up the arrays a call reads
(its arguments) and writes (what it returns, and the arguments it updates in place), so a row's
GB/s can be checked on the CPU (``tests/test_gpu_bench.py`` runs the references there).

Twins, timed in the same run as the kernel:

- ``composition``: the op's reference run on CuPy arrays, which is exactly what runs when the
  kernel declines (or ``gg.config.kernels`` is off), e.g. ``cp.maximum(x, 0)`` for relu_fwd;
- ``torch``: PyTorch's op on the same memory (``torch.as_tensor`` of the CuPy arrays), or the
  eager composition PyTorch runs for the same work where it has no single op (named so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ROTATE = 3  # input sets per case, so repeats do not just hit L2
# elements of the elementwise cases, (rows, cols) of bias_act, the GEMM's side, xent shapes
SIZES = {
    "full": {"n": 1 << 26, "rows": (8192, 4096), "gemm": 4096,
             "xent": ((32768, 1000), (512, 50000))},
    "quick": {"n": 1 << 22, "rows": (2048, 1024), "gemm": 1024,
              "xent": ((8192, 1000), (64, 50000))},
    "test": {"n": 1 << 10, "rows": (16, 32), "gemm": 32, "xent": ((64, 10), (4, 500))},
}  # fmt: skip


@dataclass
class Case:
    family: str
    name: str
    sets: list  # ROTATE argument tuples (arrays on the device; scalars pass through)
    reference: object  # (xp, *args) -> result: the composition the kernel replaces
    kernel: object = None  # (xp, *args) -> result: gpugrad's launcher, looked up on the GPU
    updated: tuple = ()  # indices of arguments the call writes in place (optimizer steps)
    host: tuple = ()  # indices of host-side arguments (hyperparameter rows): not device traffic
    torch: object = None  # (torch, *args as torch tensors) -> result
    torch_label: str = ""
    flops: int = 0
    tolerance: dict = field(default_factory=lambda: {"rtol": 1e-4, "atol": 1e-5})

    def args(self, i: int = 0):
        return self.sets[i % len(self.sets)]


def arrays_in(value):
    """Every array in a result or argument list (nested tuples, lists and dicts)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, tuple | list):
        return [a for v in value for a in arrays_in(v)]
    return [value] if hasattr(value, "nbytes") and hasattr(value, "shape") else []


def traffic(case: Case, result) -> int:
    """Bytes one call moves at least: each argument array read once, each array it returns and
    each argument it updates in place written once."""
    args = [a for k, a in enumerate(case.args(0)) if k not in case.host]
    read = sum(a.nbytes for a in arrays_in(args))
    written = sum(a.nbytes for a in arrays_in(result))
    written += sum(a.nbytes for k in case.updated for a in arrays_in(case.args(0)[k]))
    return read + written


def _launchers():
    from gpugrad.backends.cuda import launchers

    return launchers


def _rand(xp, rng, shape, scale=3.0, dtype=np.float32):
    return xp.asarray((rng.standard_normal(shape) * scale).astype(dtype))


# ----------------------------------------------------------------------------- the cases

_TORCH_ACT = {
    "relu": ("torch.relu", lambda t, x: t.relu(x)),
    "leaky_relu": ("F.leaky_relu", lambda t, x: t.nn.functional.leaky_relu(x, 0.1)),
    "sigmoid": ("torch.sigmoid", lambda t, x: t.sigmoid(x)),
    "tanh": ("torch.tanh", lambda t, x: t.tanh(x)),
}
_TORCH_ACT_BWD = {
    "relu": ("aten.threshold_backward", lambda t, d, o: t.ops.aten.threshold_backward(d, o, 0)),
    "leaky_relu": (
        "aten.leaky_relu_backward",
        lambda t, d, x, s: t.ops.aten.leaky_relu_backward(d, x, s, False),
    ),
    "sigmoid": ("aten.sigmoid_backward", lambda t, d, o: t.ops.aten.sigmoid_backward(d, o)),
    "tanh": ("aten.tanh_backward", lambda t, d, o: t.ops.aten.tanh_backward(d, o)),
}


def activation_cases(xp, rng, n):
    from gpugrad import ops

    for name in ("relu", "leaky_relu", "sigmoid", "tanh"):
        op = getattr(ops, name)
        attrs = {"negative_slope": 0.1} if name == "leaky_relu" else {}
        label, fn = _TORCH_ACT[name]
        yield (
            Case(
                "activations",
                f"{name}_fwd",
                [(_rand(xp, rng, n),) for _ in range(ROTATE)],
                reference=lambda xp, x, op=op, a=attrs: op.fwd(xp, x, **a),
                kernel=lambda xp, x, name=name, a=attrs: getattr(_launchers(), name)(xp, x, **a),
                torch=fn,
                torch_label=label,
            )
        )
    for name in ("relu", "leaky_relu", "sigmoid", "tanh"):
        op = getattr(ops, name)

        def saved(x, op=op, name=name):  # what the op saves: x and the slope, or the output
            return (x, 0.1) if name == "leaky_relu" else (op.fwd(xp, x),)

        label, fn = _TORCH_ACT_BWD[name]
        yield (
            Case(
                "activations",
                f"{name}_bwd",
                [(_rand(xp, rng, n), *saved(_rand(xp, rng, n))) for _ in range(ROTATE)],
                reference=lambda xp, *a, op=op: op.bwd(xp, *a),
                kernel=lambda xp, *a, name=name: getattr(_launchers(), f"{name}_backward")(xp, *a),
                torch=fn,
                torch_label=label,
            )
        )


def bias_act_cases(xp, rng, rows, cols):
    from gpugrad import fused

    b = _rand(xp, rng, cols)
    yield Case(
        "bias_act",
        "bias_act_fwd relu",
        [(_rand(xp, rng, (rows, cols)), b) for _ in range(ROTATE)],
        reference=lambda xp, z, b: fused.bias_act.fwd(xp, z, b),
        kernel=lambda xp, z, b: _launchers().bias_act(xp, z, b),
        torch=lambda t, z, b: t.relu(z + b),
        torch_label="relu(z + b), eager",
    )
    out = xp.maximum(_rand(xp, rng, (rows, cols)), 0)
    bwd_args = ("relu", 0.01, (True, True))
    yield Case(
        "bias_act",
        "bias_act_bwd relu",
        [(_rand(xp, rng, (rows, cols)), out, *bwd_args) for _ in range(ROTATE)],
        reference=lambda xp, *a: fused.bias_act.bwd(xp, *a),
        kernel=lambda xp, *a: _launchers().bias_act_backward(xp, *a),
        torch=lambda t, d, o, *_: _torch_bias_relu_bwd(t, d, o),
        torch_label="threshold_backward + sum(0), eager",
        tolerance={"rtol": 1e-3, "atol": 1e-3},  # column sums
    )


def _torch_bias_relu_bwd(t, d, o):
    dz = t.ops.aten.threshold_backward(d, o, 0)
    return dz, dz.sum(0)


def _targets(xp, rng, n, c):
    return xp.asarray(rng.integers(0, c, n).astype(np.int64))


def softmax_cases(xp, rng, shapes):
    from gpugrad import fused, ops

    for nr, c in shapes:
        t = _targets(xp, rng, nr, c)
        yield (
            Case(
                "softmax_xent",
                "xent_fwd (loss and dlogits)",
                [(_rand(xp, rng, (nr, c)), t) for _ in range(ROTATE)],
                reference=lambda xp, x, t: fused.cross_entropy.fwd(xp, x, t),
                kernel=lambda xp, x, t: _launchers().cross_entropy(xp, x, t),
                torch=lambda tc, x, t: _torch_loss_and_grad(tc, "cross_entropy", x, t),
                torch_label="F.cross_entropy forward + autograd.grad",
            )
        )
        for name in ("softmax", "log_softmax"):
            op = getattr(ops, name)
            yield (
                Case(
                    "softmax_xent",
                    f"{name}_fwd",
                    [(_rand(xp, rng, (nr, c)),) for _ in range(ROTATE)],
                    reference=lambda xp, x, op=op: op.fwd(xp, x),
                    kernel=lambda xp, x, name=name: getattr(_launchers(), name)(xp, x),
                    torch=lambda tc, x, name=name: getattr(tc, name)(x, -1),
                    torch_label=f"torch.{name}",
                )
            )
            o = op.fwd(xp, _rand(xp, rng, (nr, c)))
            aten = "_softmax_backward_data" if name == "softmax" else "_log_softmax_backward_data"
            yield (
                Case(
                    "softmax_xent",
                    f"{name}_bwd",
                    [(_rand(xp, rng, (nr, c)), o, -1) for _ in range(ROTATE)],
                    reference=lambda xp, *a, op=op: op.bwd(xp, *a),
                    kernel=lambda xp, *a, name=name: getattr(_launchers(), f"{name}_backward")(
                        xp, *a
                    ),
                    torch=lambda tc, d, o, axis, aten=aten: getattr(tc.ops.aten, aten)(
                        d, o, axis, tc.float32
                    ),
                    torch_label=f"aten.{aten}",
                )
            )


def _torch_loss_and_grad(t, name, x, target):
    x = x.detach().requires_grad_()
    loss = getattr(t.nn.functional, name)(x, target)
    return loss.detach(), t.autograd.grad(loss, x)[0]


def loss_cases(xp, rng, n):
    from gpugrad import fused

    for name in ("binary_cross_entropy_with_logits", "mse_loss"):
        op = getattr(fused, name)
        t = xp.asarray(rng.random(n).astype(np.float32))
        yield (
            Case(
                "losses",
                f"{name} (loss and gradient)",
                [(_rand(xp, rng, n), t) for _ in range(ROTATE)],
                reference=lambda xp, s, t, op=op: op.fwd(xp, s, t),
                kernel=lambda xp, s, t, name=name: getattr(_launchers(), name)(xp, s, t),
                torch=lambda tc, s, t, name=name: _torch_loss_and_grad(tc, name, s, t),
                torch_label=f"F.{name} forward + autograd.grad",
            )
        )


def matmul_cases(xp, rng, size):
    a = [_rand(xp, rng, (size, size), scale=1.0) for _ in range(ROTATE)]
    b = _rand(xp, rng, (size, size), scale=1.0)
    yield Case(
        "matmul",
        "matmul_tiled",
        [(a[i], b) for i in range(ROTATE)],
        reference=lambda xp, a, b: xp.matmul(a, b),  # cuBLAS on CuPy arrays
        kernel=lambda xp, a, b: _launchers().matmul_tiled(a, b),
        torch=lambda t, a, b: t.matmul(a, b),
        torch_label="torch.matmul",
        flops=2 * size**3,
        tolerance={"rtol": 1e-3, "atol": 1e-3},
    )


def optimizer_cases(xp, rng, n):
    """Adam and SGD with momentum over four parameters of n/16 elements each."""
    from gpugrad import optim_rules

    sizes = [n // 16] * 4
    p, g, m, v = ([_rand(xp, rng, s, scale=0.1) for s in sizes] for _ in range(4))
    v = [xp.abs(a) for a in v]
    adam_hp = np.tile([1, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, 0, 0, 1], (len(sizes), 1))
    sgd_hp = np.tile([1, 1e-2, 0.9, 0.0, 0.0, 0, 0, 0], (len(sizes), 1))  # momentum, not first
    none = [None] * len(sizes)
    yield Case(
        "optim",
        "adam_step, 4 parameters",
        [(p, g, m, v, none, adam_hp)],  # in place: one set, every call updates it
        reference=lambda xp, *a: optim_rules.adam_rows(*a),
        kernel=lambda xp, *a: _cuda().adam_step(*a),
        updated=(0, 2, 3),
        host=(5,),
        torch=None,  # built by gpu_bench (torch.optim.Adam(fused=True) on copies)
        torch_label="torch.optim.Adam(fused=True)",
    )
    bufs = [_rand(xp, rng, s, scale=0.1) for s in sizes]
    yield Case(
        "optim",
        "sgd_step momentum, 4 parameters",
        [(p, g, bufs, sgd_hp)],
        reference=lambda xp, *a: optim_rules.sgd_rows(*a),
        kernel=lambda xp, *a: _cuda().sgd_step(*a),
        updated=(0, 2),
        host=(3,),
        torch=None,
        torch_label="torch.optim.SGD(momentum=0.9, fused=True)",
    )


def _cuda():
    from gpugrad.backends import cuda

    return cuda


FAMILIES = ("activations", "bias_act", "softmax_xent", "losses", "matmul", "optim")


def cases(xp, family="all", size="full", seed=0):
    """Every case of ``family`` ("all" for every one) at ``size`` ("full", "quick", "test"),
    built one at a time (a generator), so a GPU run holds one case's arrays at once."""
    s = SIZES[size]
    rng = np.random.default_rng(seed)
    builders = {
        "activations": lambda: activation_cases(xp, rng, s["n"]),
        "bias_act": lambda: bias_act_cases(xp, rng, *s["rows"]),
        "softmax_xent": lambda: softmax_cases(xp, rng, s["xent"]),
        "losses": lambda: loss_cases(xp, rng, s["n"]),
        "matmul": lambda: matmul_cases(xp, rng, s["gemm"]),
        "optim": lambda: optimizer_cases(xp, rng, s["n"]),
    }
    for name, build in builders.items():
        if family in (name, "all"):
            yield from build()


def shape_of(case: Case) -> str:
    """The first argument's shape (for a list of parameters: their count and total size)."""
    first = case.args(0)[0]
    if isinstance(first, list):
        return f"{len(first)} x {first[0].size}"
    return "x".join(map(str, first.shape))
