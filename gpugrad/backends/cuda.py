"""CUDA fast paths: CuPy launchers for the kernels in ``kernels/*.cu``.

Each op launcher has exactly the signature and results of its reference forward in ``ops.py`` or
``fused.py`` (which stays the tested reference); ``dispatch.Op.impl`` picks it for CUDA tensors
when ``gg.config.kernels`` is on, through the op's ``cuda="name"`` field. Launchers take float32
and float64; any other dtype (or a shape a kernel does not cover) runs the reference forward.

Kernel files are compiled lazily by NVRTC through ``cupy.RawModule``, once per (file, device),
and cached for the process (CuPy also keeps the binaries in its on-disk cache). ``common.cuh``
is pasted into the source before compiling, so CuPy's cache key covers it. Compile and launch
failures raise ``KernelError`` naming the kernel and its file.

Nothing here imports CuPy at module import: ``KERNELS`` (the table of kernels each file must
define, checked by ``tools/compile_kernels.py``) is readable on a machine without a GPU.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

import numpy as np


def _kernel_dir() -> Path:
    """GPUGRAD_KERNEL_DIR, else the source tree's kernels/, else the installed gpugrad/kernels."""
    if "GPUGRAD_KERNEL_DIR" in os.environ:
        return Path(os.environ["GPUGRAD_KERNEL_DIR"])
    here = Path(__file__).resolve().parents[1]
    source = here.parent / "kernels"
    return source if (source / "common.cuh").exists() else here / "kernels"


KERNEL_DIR = _kernel_dir()
OPTIONS = ("-std=c++17",)
BLOCK = 256  # threads per 1-D block; GG_BLOCK in kernels/common.cuh
WARP_ROW_MAX = 1024  # rows up to this many columns get a warp each, wider ones a block
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}

# Base names of the kernels each file defines (each as _f32 and _f64) and this module launches.
KERNELS: dict[str, tuple[str, ...]] = {
    "activations.cu": (
        "relu_fwd",
        "relu_bwd",
        "leaky_relu_fwd",
        "leaky_relu_bwd",
        "sigmoid_fwd",
        "sigmoid_bwd",
        "tanh_fwd",
        "tanh_bwd",
    ),
    "bias_act.cu": ("bias_act_fwd", "bias_act_bwd"),
    "softmax_xent.cu": tuple(
        f"{base}_{kind}"
        for base in ("xent_fwd", "softmax_fwd", "log_softmax_fwd", "softmax_bwd", "log_softmax_bwd")
        for kind in ("warp", "block")
    ),
    "losses.cu": ("bce_logits_fwd", "mse_fwd"),
    "matmul.cu": ("matmul_tiled_vec", "matmul_tiled_scalar"),
    "optim.cu": ("sgd_step", "adam_step"),
}

ACTIVATIONS = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}


class KernelError(RuntimeError):
    """A kernel failed to compile, load or launch; the message names the kernel and its file."""


# ----------------------------------------------------------------------------- loading

_lock = threading.Lock()
_modules: dict[tuple[str, int], object] = {}  # (file, device id) -> cupy.RawModule
_functions: dict[tuple[str, int, str], object] = {}  # (file, device id, name) -> RawKernel
_sm_count: dict[int, int] = {}


def _cp():
    import cupy

    return cupy


def source(file: str) -> str:
    """The text NVRTC compiles for ``file``: the file with ``common.cuh`` pasted in."""
    path = KERNEL_DIR / file
    try:
        code = path.read_text()
        common = (KERNEL_DIR / "common.cuh").read_text()
    except OSError as e:
        raise KernelError(f"cannot read kernel source {path}: {e}") from e
    include = '#include "common.cuh"'
    if include in code:
        code = code.replace(include, f'#line 1 "common.cuh"\n{common}\n#line 1 "{file}"', 1)
    return code


def module(file: str):
    """The compiled ``cupy.RawModule`` of a kernel file on the current device (cached)."""
    cp = _cp()
    key = (file, cp.cuda.Device().id)
    mod = _modules.get(key)
    if mod is None:
        with _lock:
            mod = _modules.get(key)
            if mod is None:
                mod = cp.RawModule(code=source(file), options=OPTIONS)
                try:
                    mod.compile()
                except Exception as e:
                    raise KernelError(
                        f"kernels/{file}: NVRTC compilation failed on cuda:{key[1]} with "
                        f"options {OPTIONS}: {e}"
                    ) from e
                _modules[key] = mod
    return mod


def kernel_name(base: str, dtype) -> str:
    sfx = _SUFFIX.get(np.dtype(dtype))
    if sfx is None:
        raise TypeError(f"kernel {base}: no version for dtype {dtype}; float32 and float64 only")
    return f"{base}_{sfx}"


def function(file: str, base: str, dtype):
    """The ``cupy.RawKernel`` for ``<base>_<f32|f64>`` in ``kernels/<file>`` (cached)."""
    if base not in KERNELS.get(file, ()):
        raise KernelError(f"kernel {base} is not listed for kernels/{file} in KERNELS")
    name = kernel_name(base, dtype)
    cp = _cp()
    key = (file, cp.cuda.Device().id, name)
    fn = _functions.get(key)
    if fn is None:
        try:
            fn = module(file).get_function(name)
        except KernelError:
            raise
        except Exception as e:
            raise KernelError(f"kernel {name} could not be loaded from kernels/{file}: {e}") from e
        _functions[key] = fn
    return fn


def launch(file: str, base: str, dtype, grid, block, args, shared_mem: int = 0) -> None:
    """Launch ``<base>_<dtype>`` from ``kernels/<file>`` on the current stream."""
    fn = function(file, base, dtype)
    try:
        fn(tuple(grid), tuple(block), tuple(args), shared_mem=shared_mem)
    except Exception as e:
        raise KernelError(
            f"launching kernel {kernel_name(base, dtype)} from kernels/{file} failed "
            f"(grid {tuple(grid)}, block {tuple(block)}): {type(e).__name__}: {e}"
        ) from e


def sm_count() -> int:
    cp = _cp()
    dev = cp.cuda.Device()
    if dev.id not in _sm_count:
        _sm_count[dev.id] = int(dev.attributes["MultiProcessorCount"])
    return _sm_count[dev.id]


def grid_1d(n: int, per_thread: int = 1, waves: int = 32) -> int:
    """Blocks for a grid-stride loop over n items: enough to cover them, capped at a few waves."""
    need = math.ceil(n / (BLOCK * per_thread))
    return max(1, min(need, sm_count() * waves))


def _fast(*arrays) -> bool:
    """True when every array is float32 or float64, all of one dtype: a kernel exists."""
    dt = arrays[0].dtype
    return dt in _SUFFIX and all(a.dtype == dt for a in arrays)


def _contig(a):
    return a if a.flags.c_contiguous else _cp().ascontiguousarray(a)


def _scalar(dtype, value):
    return np.dtype(dtype).type(value)


# ----------------------------------------------------------------------------- activations


def _map1(base, x, *scalars):
    cp = _cp()
    x = _contig(x)
    out = cp.empty(x.shape, x.dtype)
    if x.size:
        vec = 16 // x.dtype.itemsize
        grid = grid_1d(x.size, vec)
        args = (x, out, *(_scalar(x.dtype, s) for s in scalars), np.int64(x.size))
        launch("activations.cu", base, x.dtype, (grid,), (BLOCK,), args)
    return out


def _map2(base, a, b, *scalars):
    cp = _cp()
    a, b = _contig(a), _contig(b)
    if a.shape != b.shape:
        a, b = (_contig(v) for v in cp.broadcast_arrays(a, b))
    out = cp.empty(a.shape, a.dtype)
    if a.size:
        grid = grid_1d(a.size, 16 // a.dtype.itemsize)
        args = (a, b, out, *(_scalar(a.dtype, s) for s in scalars), np.int64(a.size))
        launch("activations.cu", base, a.dtype, (grid,), (BLOCK,), args)
    return out


def relu(xp, x):
    if not _fast(x):
        return _ops().relu.fwd(xp, x)
    return _map1("relu_fwd", x)


def relu_backward(xp, dout, out):
    if not _fast(dout, out):
        return _ops().relu.bwd(xp, dout, out)
    return (_map2("relu_bwd", dout, out),)


def leaky_relu(xp, x, *, negative_slope=0.01):
    if not _fast(x):
        return _ops().leaky_relu.fwd(xp, x, negative_slope=negative_slope)
    return _map1("leaky_relu_fwd", x, negative_slope)


def leaky_relu_backward(xp, dout, x, negative_slope):
    if not _fast(dout, x):
        return _ops().leaky_relu.bwd(xp, dout, x, negative_slope)
    return (_map2("leaky_relu_bwd", dout, x, negative_slope),)


def sigmoid(xp, x):
    if not _fast(x):
        return _ops().sigmoid.fwd(xp, x)
    return _map1("sigmoid_fwd", x)


def sigmoid_backward(xp, dout, out):
    if not _fast(dout, out):
        return _ops().sigmoid.bwd(xp, dout, out)
    return (_map2("sigmoid_bwd", dout, out),)


def tanh(xp, x):
    if not _fast(x):
        return _ops().tanh.fwd(xp, x)
    return _map1("tanh_fwd", x)


def tanh_backward(xp, dout, out):
    if not _fast(dout, out):
        return _ops().tanh.bwd(xp, dout, out)
    return (_map2("tanh_bwd", dout, out),)


# ----------------------------------------------------------------------------- bias + act


def bias_act(xp, z, b, *, activation="relu", negative_slope=0.01):
    """fused.bias_act's CUDA path: act(z + b) for z (..., C) and b (C,) in one pass."""
    cp = _cp()
    code = _act_code(activation, negative_slope)
    if z.ndim == 0 or b.shape != z.shape[-1:] or not _fast(z, b):
        return _fused().bias_act.fwd(xp, z, b, activation=activation, negative_slope=negative_slope)
    z2, b = _contig(z).reshape(-1, z.shape[-1]), _contig(b)
    out = cp.empty_like(z2)
    n, m = z2.shape
    if z2.size:
        grid = grid_1d(z2.size, 16 // z2.dtype.itemsize)
        args = (z2, b, out, np.int64(n), np.int64(m), np.int32(code))
        args += (_scalar(z2.dtype, negative_slope),)
        launch("bias_act.cu", "bias_act_fwd", z2.dtype, (grid,), (BLOCK,), args)
    return out.reshape(z.shape)


def bias_act_backward(xp, dout, out, activation, negative_slope, needs):
    """fused.bias_act's backward on the GPU: (dz, db) in one kernel from the saved output.

    Same signature and results as the reference backward; the op table dispatches forwards
    only, so the op's backward calls this when it runs on CuPy.
    """
    from ..dispatch import config

    cp = _cp()
    code = _act_code(activation, negative_slope)
    # The kernel sums db with atomicAdd, whose order varies run to run; under
    # gg.config.deterministic the reference sums with CuPy's fixed-order reduction instead.
    slow = out.ndim == 0 or dout.shape != out.shape or not _fast(dout, out)
    if slow or (config.deterministic and needs[1]):
        return _fused().bias_act.bwd(xp, dout, out, activation, negative_slope, needs)
    d2, o2 = _contig(dout).reshape(-1, out.shape[-1]), _contig(out).reshape(-1, out.shape[-1])
    n, m = o2.shape
    dz = cp.empty_like(o2)
    db = cp.zeros(m, out.dtype)  # the kernel accumulates into it with atomics
    if o2.size:
        gx = math.ceil(m / 32)
        gy = max(1, min(math.ceil(n / 8), (sm_count() * 16) // gx))
        args = (d2, o2, dz, db, np.int64(n), np.int64(m), np.int32(code))
        args += (_scalar(out.dtype, negative_slope),)
        launch("bias_act.cu", "bias_act_bwd", out.dtype, (gx, gy), (32, 8), args)
    return (dz.reshape(out.shape) if needs[0] else None), (db if needs[1] else None)


def _act_code(act, negative_slope):
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown activation {act!r}; one of {sorted(ACTIVATIONS)}")
    if act == "leaky_relu" and negative_slope < 0:
        raise ValueError(
            "bias_act: leaky_relu's backward reads the sign of the output, so negative_slope "
            f"must be >= 0, got {negative_slope}"
        )
    return ACTIVATIONS[act]


# ----------------------------------------------------------------------------- softmax family


def _rows(base, dtype, n, c, args):
    """Launch a row kernel: a warp per row for narrow rows, a block per row for wide ones."""
    if c <= WARP_ROW_MAX:
        grid = max(1, min(math.ceil(n / (BLOCK // 32)), sm_count() * 32))
        launch("softmax_xent.cu", f"{base}_warp", dtype, (grid,), (BLOCK,), args)
    else:
        grid = max(1, min(n, sm_count() * 16))
        launch("softmax_xent.cu", f"{base}_block", dtype, (grid,), (BLOCK,), args)


def _last_axis(x, axis):
    """x with ``axis`` moved last, contiguous, as (rows, cols), plus a function to undo it."""
    cp = _cp()
    axis = axis % x.ndim
    moved = axis != x.ndim - 1
    xt = _contig(cp.moveaxis(x, axis, -1) if moved else x)
    shape = xt.shape

    def restore(a):
        a = a.reshape(shape)
        return cp.moveaxis(a, -1, axis) if moved else a

    c = shape[-1]
    return xt.reshape(-1, c) if c else xt, restore


def _softmax_fwd(base, ref, xp, x, axis):
    if x.ndim == 0 or not _fast(x) or x.size == 0:
        return ref(xp, x, axis=axis)
    x2, restore = _last_axis(x, axis)
    n, c = x2.shape
    out = _cp().empty_like(x2)
    _rows(base, x.dtype, n, c, (x2, np.int64(n), np.int64(c), out))
    return restore(out)


def softmax(xp, x, *, axis=-1):
    return _softmax_fwd("softmax_fwd", _ops().softmax.fwd, xp, x, axis)


def log_softmax(xp, x, *, axis=-1):
    return _softmax_fwd("log_softmax_fwd", _ops().log_softmax.fwd, xp, x, axis)


def _softmax_bwd(base, ref, xp, dout, out, axis):
    if out.ndim == 0 or not _fast(dout, out) or out.size == 0 or dout.shape != out.shape:
        return ref(xp, dout, out, axis)
    d2, _ = _last_axis(dout, axis)
    o2, restore = _last_axis(out, axis)
    n, c = o2.shape
    dx = _cp().empty_like(o2)
    _rows(base, out.dtype, n, c, (d2, o2, np.int64(n), np.int64(c), dx))
    return (restore(dx),)


def softmax_backward(xp, dout, out, axis):
    """The GPU kernel for ops.softmax's backward (the op table still uses the xp reference)."""
    return _softmax_bwd("softmax_bwd", _ops().softmax.bwd, xp, dout, out, axis)


def log_softmax_backward(xp, dout, out, axis):
    """The GPU kernel for ops.log_softmax's backward (the op table uses the xp reference)."""
    return _softmax_bwd("log_softmax_bwd", _ops().log_softmax.bwd, xp, dout, out, axis)


def cross_entropy(xp, logits, targets, *, reduction="mean", ignore_index=-100):
    cp = _cp()
    if logits.ndim != 2 or not _fast(logits) or logits.shape[1] == 0:
        return _fused().cross_entropy.fwd(
            xp, logits, targets, reduction=reduction, ignore_index=ignore_index
        )
    logits = _contig(logits)
    targets = cp.ascontiguousarray(targets, dtype=cp.int64)
    n, c = logits.shape
    # The number of counted rows stays on the device: the kernel reads it, the host never waits.
    count = cp.count_nonzero(targets != ignore_index).astype(cp.int64).reshape(1)
    per_row = cp.empty(n, logits.dtype)
    dlogits = cp.empty_like(logits)
    if n:
        args = (logits, targets, np.int64(n), np.int64(c), np.int64(ignore_index), count)
        args += (np.int32(reduction == "mean"), per_row, dlogits)
        _rows("xent_fwd", logits.dtype, n, c, args)
    return _reduce(per_row, reduction, count[0]), {"dlogits": dlogits}


def _reduce(per_item, reduction, count):
    if reduction == "none":
        return per_item
    total = per_item.sum(dtype=np.float64)
    if reduction == "sum":
        return total.astype(per_item.dtype)
    return (total / count).astype(per_item.dtype)  # 0 / 0 is NaN, as in the reference


# ----------------------------------------------------------------------------- losses


def _pointwise_loss(base, a, b, reduction, factor):
    """Run bce_logits_fwd / mse_fwd; return (loss, gradient with a's shape)."""
    cp = _cp()
    shape = a.shape
    a, b = _contig(a).reshape(-1), _contig(b).reshape(-1)
    n = a.size
    grad = cp.empty_like(a)
    per_item = cp.empty_like(a) if reduction == "none" else None
    grid = grid_1d(n) if n else 1
    partials = cp.zeros(grid, np.float64)
    if n:
        args = (a, b, np.int64(n), _scalar(a.dtype, factor))
        args += (per_item if per_item is not None else np.uint64(0), grad, partials)
        launch("losses.cu", base, a.dtype, (grid,), (BLOCK,), args)
    if reduction == "none":
        out = per_item.reshape(shape)
    else:
        total = partials.sum()
        out = total if reduction == "sum" else total / n if n else cp.asarray(np.nan)
        out = out.astype(a.dtype)
    return out, grad.reshape(shape)


def binary_cross_entropy_with_logits(xp, logits, targets, *, reduction="mean"):
    if not _fast(logits, targets) or logits.shape != targets.shape:
        return _fused().binary_cross_entropy_with_logits.fwd(
            xp, logits, targets, reduction=reduction
        )
    scale = _fused()._scale(reduction, logits.size)
    out, dlogits = _pointwise_loss("bce_logits_fwd", logits, targets, reduction, scale)
    return out, {"dlogits": dlogits, "scale": scale}


def mse_loss(xp, input, targets, *, reduction="mean"):
    if not _fast(input, targets) or input.shape != targets.shape:
        return _fused().mse_loss.fwd(xp, input, targets, reduction=reduction)
    factor = 2 * _fused()._scale(reduction, input.size)
    out, dinput = _pointwise_loss("mse_fwd", input, targets, reduction, factor)
    return out, {"dinput": dinput}


# ----------------------------------------------------------------------------- matmul


def matmul(xp, x, y):
    """ops.matmul's CUDA path: the tiled kernel when gg.config.matmul == "custom" and both
    operands are 2-D of one float dtype; cupy.matmul (cuBLAS) otherwise."""
    from ..dispatch import config

    if (
        config.matmul != "custom"
        or x.ndim != 2
        or y.ndim != 2
        or x.shape[1] != y.shape[0]
        or not _fast(x, y)
    ):
        return _ops().matmul.fwd(xp, x, y)
    return matmul_tiled(x, y)


def linear(xp, x, w):
    """ops.linear's CUDA path: x @ w.T through the tiled kernel when gg.config.matmul ==
    "custom" and x is 2-D; cuBLAS (and the reference's shape and dtype errors) otherwise."""
    from ..dispatch import config

    usable = (
        config.matmul == "custom"
        and x.ndim == 2
        and w.ndim == 2
        and x.shape[1] == w.shape[1]
        and _fast(x, w)
    )
    if not usable:
        return _ops().linear.fwd(xp, x, w)
    return matmul_tiled(x, w.T)


def matmul_tiled(a, b, vectorized: bool | None = None):
    """C = A @ B with kernels/matmul.cu; ``vectorized`` None picks float4 loads when allowed."""
    cp = _cp()
    a, b = _contig(a), _contig(b)
    m, k = a.shape
    n = b.shape[1]
    if max(m, n, k) >= 2**31:
        raise ValueError(f"matmul_tiled: dimensions {a.shape} @ {b.shape} exceed int32")
    c = cp.empty((m, n), a.dtype)
    if c.size == 0:
        return c
    if k == 0:
        c.fill(0)
        return c
    can_vec = k % 4 == 0 and n % 4 == 0 and (a.data.ptr | b.data.ptr | c.data.ptr) % 16 == 0
    if vectorized and not can_vec:
        raise ValueError(
            f"matmul_tiled: the float4 version needs K and N multiples of 4 and 16-byte aligned "
            f"operands; got {a.shape} @ {b.shape}"
        )
    use_vec = can_vec if vectorized is None else vectorized
    base = "matmul_tiled_vec" if use_vec else "matmul_tiled_scalar"
    grid = (math.ceil(n / 64), math.ceil(m / 64))
    args = (a, b, c, np.int32(m), np.int32(n), np.int32(k))
    launch("matmul.cu", base, a.dtype, grid, (BLOCK,), args)
    return c


# ----------------------------------------------------------------------------- optimizers

CHUNK = 65536  # elements per block in the multi-tensor kernels
# Columns of the hyperparameter rows, one row per parameter (as backends/cpu_optim.py takes).
SGD_COLUMNS = ("active", "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
               "first")  # fmt: skip
ADAM_COLUMNS = ("active", "lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "decoupled",
                "maximize", "step")  # fmt: skip
_tables: dict[tuple, tuple] = {}  # parameter layout -> device metadata (a few entries)


def _pointer_table(groups):
    """Device pointer arrays per group (0 for a None entry), sizes and the chunk table."""
    cp = _cp()
    key = tuple((0, 0) if a is None else (a.data.ptr, a.size) for g in groups for a in g)
    hit = _tables.get(key)
    if hit is not None:
        return hit
    sizes = [a.size for a in groups[0]]
    chunk_tensor, chunk_start = [], []
    for t, size in enumerate(sizes):
        for start in range(0, size, CHUNK):
            chunk_tensor.append(t)
            chunk_start.append(start)
    ptrs = [
        cp.asarray(np.array([0 if a is None else a.data.ptr for a in g], np.uint64)) for g in groups
    ]
    table = (
        ptrs,
        cp.asarray(np.array(sizes, np.int64)),
        cp.asarray(np.array(chunk_tensor, np.int32)),
        cp.asarray(np.array(chunk_start, np.int64)),
        len(chunk_tensor),
    )
    if len(_tables) >= 8:
        _tables.clear()
    _tables[key] = table
    return table


def _check_groups(name, groups, hp, columns, required):
    """Validate the lists of a multi-tensor step; return (dtype or None when empty, hp)."""
    params = groups[0]
    if not params:
        return None, None
    dtype = params[0].dtype
    if dtype not in _SUFFIX:
        raise TypeError(f"{name}: parameters must be float32 or float64, got {dtype}")
    for gi, g in enumerate(groups):
        if len(g) != len(params):
            raise ValueError(f"{name}: {len(params)} parameters but a list of {len(g)} arrays")
        for p, a in zip(params, g, strict=True):
            if a is None and gi < required:
                raise ValueError(f"{name}: list {gi} has a missing array")
            if a is not None and (
                a.shape != p.shape or a.dtype != dtype or not a.flags.c_contiguous
            ):
                raise ValueError(
                    f"{name}: every array must be contiguous {dtype} of its parameter's shape; "
                    f"got {a.shape} {a.dtype} for a parameter {p.shape}"
                )
    if np.shape(hp) != (len(params), len(columns)):
        raise ValueError(f"{name}: hp must be ({len(params)}, {len(columns)}), got {np.shape(hp)}")
    return dtype, _device_hp(name, hp)


_hp_cache: dict = {}  # (kernel name, GPU) -> (host rows, device copy) of the last launch


def _device_hp(name, hp):
    """The hyperparameter rows on the GPU, uploaded only when they changed since the last
    launch: a steady SGD step then copies nothing from the host, which is also what lets
    gg.cuda.graph capture it (a host-to-device copy cannot be captured)."""
    if not isinstance(hp, np.ndarray):
        return _contig(_cp().asarray(hp, dtype=np.float64))
    key = (name, _cp().cuda.Device().id)
    hit = _hp_cache.get(key)
    if hit is not None and hit[0].shape == hp.shape and np.array_equal(hit[0], hp):
        return hit[1]
    device = _contig(_cp().asarray(hp, dtype=np.float64))
    _hp_cache[key] = (np.array(hp, np.float64), device)
    return device


def _step(name, groups, hp, columns, required):
    dtype, hp = _check_groups(name, groups, hp, columns, required)
    if dtype is None:
        return
    ptrs, sizes, chunk_tensor, chunk_start, n_chunks = _pointer_table(groups)
    if n_chunks == 0:
        return
    args = (*ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks), np.int64(CHUNK))
    args += (hp, np.int32(len(columns)))
    grid = min(n_chunks, sm_count() * 32)
    launch("optim.cu", name, dtype, (grid,), (BLOCK,), args)


def sgd_step(params, grads, bufs, hp) -> None:
    """PyTorch's SGD over every parameter in one launch, in place on params and bufs.

    params, grads, bufs: lists of contiguous CuPy arrays (a buf may be None where that row's
    momentum is 0); hp: (len(params), len(SGD_COLUMNS)) float64 rows.
    """
    _step("sgd_step", [params, grads, bufs], hp, SGD_COLUMNS, required=2)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hp) -> None:
    """PyTorch's Adam / AdamW over every parameter in one launch, in place.

    max_exp_avg_sqs entries may be None where amsgrad is off; hp rows follow ADAM_COLUMNS.
    """
    groups = [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs]
    _step("adam_step", groups, hp, ADAM_COLUMNS, required=4)


def sgd_reference(xp, params, grads, bufs, hp) -> None:
    """``sgd_step`` written against xp, one tensor at a time (float64 arithmetic)."""
    for k, (p, g) in enumerate(zip(params, grads, strict=True)):
        active, lr, momentum, dampening, wd, nesterov, maximize, first = (float(v) for v in hp[k])
        if not active:
            continue
        d = -g.astype(np.float64) if maximize else g.astype(np.float64)
        if wd:
            d = d + wd * p
        if momentum:
            b = d if first else momentum * bufs[k] + (1 - dampening) * d
            bufs[k][...] = b
            d = d + momentum * b if nesterov else b
        p[...] = p - lr * d


def adam_reference(xp, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, hp) -> None:
    """``adam_step`` written against xp, one tensor at a time (float64 arithmetic)."""
    for k, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, strict=True)):
        active, lr, beta1, beta2, eps, wd, amsgrad, decoupled, maximize, step = (
            float(x) for x in hp[k]
        )
        if not active:
            continue
        d = -g.astype(np.float64) if maximize else g.astype(np.float64)
        x = p.astype(np.float64)
        if decoupled:
            x = x * (1 - lr * wd)
        elif wd:
            d = d + wd * x
        mi = m + (1 - beta1) * (d - m)
        vi = beta2 * v + (1 - beta2) * d * d
        m[...] = mi
        v[...] = vi
        if amsgrad:
            vi = xp.maximum(max_exp_avg_sqs[k], vi)
            max_exp_avg_sqs[k][...] = vi
        step_size = lr / (1 - beta1**step)
        bc2_sqrt = math.sqrt(1 - beta2**step)
        p[...] = x - step_size * mi / (xp.sqrt(vi) / bc2_sqrt + eps)


# ----------------------------------------------------------------------------- helpers


def _ops():
    from .. import ops

    return ops


def _fused():
    from .. import fused

    return fused
