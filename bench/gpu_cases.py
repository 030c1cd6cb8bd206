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
  eager composition PyTorch runs for the same work where it has no single op (named so);
  for a case that updates its arguments in place (optimizer steps, gradient clipping),
  ``torch_step`` builds PyTorch's step on copies of them, its state seeded from the case's
  arrays and its hyperparameters read from the same rows, so it does the kernel's update.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

ROTATE = 3  # input sets per case, so repeats do not just hit L2
# elements of the elementwise cases, (rows, cols) of bias_act, the GEMM's side, xent shapes,
# LayerNorm's (rows, width): one width for the warp-per-row kernels, one for the block-per-row
SIZES = {
    "full": {"n": 1 << 26, "rows": (8192, 4096), "gemm": 4096,
             "xent": ((32768, 1000), (512, 50000)), "ln": ((16384, 1024), (2048, 8192))},
    "quick": {"n": 1 << 22, "rows": (2048, 1024), "gemm": 1024,
              "xent": ((8192, 1000), (64, 50000)), "ln": ((4096, 1024), (512, 8192))},
    "test": {"n": 1 << 10, "rows": (16, 32), "gemm": 32, "xent": ((64, 10), (4, 1100)),
             "ln": ((16, 32), (4, 1100))},
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
    unread: tuple = ()  # indices of device arguments the kernel does not read (passed for shape)
    torch: object = None  # (torch, *args as torch tensors) -> result
    torch_step: object = None  # (torch, *copies of args as torch tensors) -> step(), in place
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
    """Bytes one call moves at least: each argument array the kernel reads read once, each array
    it returns and each argument it updates in place written once."""
    skip = (*case.host, *case.unread)
    args = [a for k, a in enumerate(case.args(0)) if k not in skip]
    read = sum(a.nbytes for a in arrays_in(args))
    written = sum(a.nbytes for a in arrays_in(result))
    written += sum(a.nbytes for k in case.updated for a in arrays_in(case.args(0)[k]))
    return read + written


def _launchers():
    from gpugrad.backends.cuda import launchers

    return launchers


def _rand(xp, rng, shape, scale=3.0, dtype=np.float32):
    a = rng.standard_normal(shape, dtype=dtype)  # drawn in its dtype: a full run makes ~100
    a *= scale  # arrays of 2^26 values on the host
    return xp.asarray(a)


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


# GELU (exact and tanh), SiLU: their backward kernels read the input x, not the output
_TORCH_X_ACT = {
    "gelu": ("F.gelu", lambda t, x: t.nn.functional.gelu(x), "aten.gelu_backward",
             lambda t, d, x, a: t.ops.aten.gelu_backward(d, x, approximate=a)),
    "gelu_tanh": ("F.gelu(approximate='tanh')",
                  lambda t, x: t.nn.functional.gelu(x, approximate="tanh"),
                  "aten.gelu_backward(approximate='tanh')",
                  lambda t, d, x, a: t.ops.aten.gelu_backward(d, x, approximate=a)),
    "silu": ("F.silu", lambda t, x: t.nn.functional.silu(x), "aten.silu_backward",
             lambda t, d, x: t.ops.aten.silu_backward(d, x)),
}  # fmt: skip


def input_activation_cases(xp, rng, n):
    """gelu_fwd/bwd, gelu_tanh_fwd/bwd, silu_fwd/bwd and erf_fwd: the op's reference (GELU
    through cupyx's erf, SiLU through a sign-split sigmoid) against the kernel."""
    from gpugrad import ops

    for kernel, name, attrs in (
        ("gelu", "gelu", {"approximate": "none"}),
        ("gelu_tanh", "gelu", {"approximate": "tanh"}),
        ("silu", "silu", {}),
    ):
        op = getattr(ops, name)
        label, fn, bwd_label, bwd_fn = _TORCH_X_ACT[kernel]
        yield Case(
            "activations",
            f"{kernel}_fwd",
            [(_rand(xp, rng, n),) for _ in range(ROTATE)],
            reference=lambda xp, x, op=op, a=attrs: op.fwd(xp, x, **a),
            kernel=lambda xp, x, name=name, a=attrs: getattr(_launchers(), name)(xp, x, **a),
            torch=fn,
            torch_label=label,
        )
        saved = tuple(attrs.values())  # what the op saves with x: gelu's approximate=
        yield Case(
            "activations",
            f"{kernel}_bwd",
            [(_rand(xp, rng, n), _rand(xp, rng, n), *saved) for _ in range(ROTATE)],
            reference=lambda xp, *a, op=op: op.bwd(xp, *a),
            kernel=lambda xp, *a, name=name: getattr(_launchers(), f"{name}_backward")(xp, *a),
            torch=bwd_fn,
            torch_label=bwd_label,
        )
    yield Case(
        "activations",
        "erf_fwd",
        [(_rand(xp, rng, n, scale=1.0),) for _ in range(ROTATE)],
        reference=lambda xp, x: ops.erf.fwd(xp, x),
        kernel=lambda xp, x: _launchers().erf(xp, x),
        torch=lambda t, x: t.special.erf(x),
        torch_label="torch.special.erf",
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
    yield Case(
        "bias_act",
        "bias_act_fwd gelu",
        [(_rand(xp, rng, (rows, cols)), b) for _ in range(ROTATE)],
        reference=lambda xp, z, b: fused.bias_act.fwd(xp, z, b, activation="gelu"),
        kernel=lambda xp, z, b: _launchers().bias_act(xp, z, b, activation="gelu"),
        torch=lambda t, z, b: t.nn.functional.gelu(z + b),
        torch_label="F.gelu(z + b), eager",
    )
    # GELU's derivative needs z + b: backward reads dout, z and b; the output only sets the shape
    z = _rand(xp, rng, (rows, cols))
    saved = (fused.bias_act.fwd(xp, z, b, activation="gelu"), "gelu", 0.01, (True, True), z, b)
    yield Case(
        "bias_act",
        "bias_act_bwd gelu",
        [(_rand(xp, rng, (rows, cols)), *saved) for _ in range(ROTATE)],
        reference=lambda xp, *a: fused.bias_act.bwd(xp, *a),
        kernel=lambda xp, *a: _launchers().bias_act_backward(xp, *a),
        unread=(1,),
        torch=lambda t, d, o, act, slope, needs, z, b: _torch_bias_gelu_bwd(t, d, z, b),
        torch_label="gelu_backward(dout, z + b) + sum(0), eager",
        tolerance={"rtol": 1e-3, "atol": 1e-3},  # column sums
    )


def _torch_bias_relu_bwd(t, d, o):
    dz = t.ops.aten.threshold_backward(d, o, 0)
    return dz, dz.sum(0)


def _torch_bias_gelu_bwd(t, d, z, b):
    dz = t.ops.aten.gelu_backward(d, z + b)
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


def layernorm_cases(xp, rng, shapes):
    """Forward, backward (dx, dw, db: both kernels, as training runs it) and each backward
    kernel alone, for a width that gets a warp per row and one that gets a block per row.
    PyTorch's twins are the aten ops F.layer_norm and its backward run, with the same
    output mask."""
    from gpugrad import fused
    from gpugrad.backends.cuda.runtime import WARP_ROW_MAX

    for m, d in shapes:
        rows = "warp" if d <= WARP_ROW_MAX else "block"
        w, b = _rand(xp, rng, d, scale=1.0), _rand(xp, rng, d, scale=1.0)
        xs = [_rand(xp, rng, (m, d)) for _ in range(ROTATE)]
        yield Case(
            "layernorm",
            f"layernorm_fwd_{rows}",
            [(x, w, b) for x in xs],
            reference=lambda xp, x, w, b: fused.layer_norm.fwd(xp, x, w, b),
            kernel=lambda xp, x, w, b: _layernorm().layer_norm(xp, x, w, b),
            torch=lambda t, x, w, b: t.ops.aten.native_layer_norm(x, [x.shape[-1]], w, b, 1e-5),
            torch_label="aten.native_layer_norm (F.layer_norm)",
        )
        stats = [fused.layer_norm.fwd(xp, x, w, b)[1] for x in xs]
        for name, needs, unread in (
            # the saved values: dout, mean, rstd, x, w, b, normalized_ndim, eps, needs
            (f"layernorm_bwd_{rows} + layernorm_param_bwd (dx, dw, db)", (True,) * 3, (5,)),
            (f"layernorm_bwd_{rows} (dx)", (True, False, False), (5,)),
            ("layernorm_param_bwd (dw, db)", (False, True, True), (4, 5)),  # w unread too
        ):
            tail = (1, 1e-5, needs)
            yield Case(
                "layernorm",
                name,
                [
                    (_rand(xp, rng, (m, d), scale=1.0), s["mean"], s["rstd"], x, w, b, *tail)
                    for x, s in zip(xs, stats, strict=True)
                ],
                reference=lambda xp, *a: fused.layer_norm.bwd(xp, *a),
                kernel=lambda xp, *a: _layernorm().layer_norm_backward(xp, *a),
                unread=unread,  # the bias (and for the column sums, the weight)
                torch=_torch_layer_norm_bwd,
                torch_label="aten.native_layer_norm_backward",
                tolerance={"rtol": 1e-3, "atol": 1e-3},  # row and column sums in float32
            )


def _torch_layer_norm_bwd(t, dy, mean, rstd, x, w, b, nd, eps, needs):
    return t.ops.aten.native_layer_norm_backward(dy, x, [x.shape[-1]], mean, rstd, w, b,
                                                 list(needs))  # fmt: skip


def _layernorm():
    from gpugrad.backends.cuda import layernorm

    return layernorm


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


def _cuda():
    from gpugrad.backends import cuda

    return cuda


FAMILIES = ("activations", "bias_act", "layernorm", "softmax_xent", "losses", "matmul", "optim")


def cases(xp, family="all", size="full", seed=0):
    """Every case of ``family`` ("all" for every one) at ``size`` ("full", "quick", "test"),
    built one at a time (a generator), so a GPU run holds one case's arrays at once."""
    s = SIZES[size]
    rng = np.random.default_rng(seed)
    builders = {
        "activations": lambda: itertools.chain(activation_cases(xp, rng, s["n"]),
                                               input_activation_cases(xp, rng, s["n"])),
        "bias_act": lambda: bias_act_cases(xp, rng, *s["rows"]),
        "layernorm": lambda: layernorm_cases(xp, rng, s["ln"]),
        "softmax_xent": lambda: softmax_cases(xp, rng, s["xent"]),
        "losses": lambda: loss_cases(xp, rng, s["n"]),
        "matmul": lambda: matmul_cases(xp, rng, s["gemm"]),
        "optim": lambda: _optim(xp, rng, s["n"]),
    }  # fmt: skip
    for name, build in builders.items():
        if family in (name, "all"):
            yield from build()


def _optim(xp, rng, n):
    from gpu_optim_cases import clip_cases, optimizer_cases  # it imports this module

    yield from optimizer_cases(xp, rng, n)
    yield from clip_cases(xp, rng, n)


def shape_of(case: Case) -> str:
    """The first argument's shape (for a list of parameters: their count and total size)."""
    first = case.args(0)[0]
    if isinstance(first, list):
        return f"{len(first)} x {first[0].size}"
    return "x".join(map(str, first.shape))
