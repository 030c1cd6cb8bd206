"""Every kernel in KERNELS, float32 and float64, run on the emulated device through the
backend's ``launch`` against a float64 NumPy reference.

Sizes avoid multiples of 4, 32 and 256; rows are 1 to several thousand wide; inputs include
saturating and non-finite values, ignored rows and misaligned views. Each kernel runs with the
grid its launcher picks and with a single block (so every grid-stride loop loops); the emulator
runs each launch under several thread orders and checks barriers, shuffles and bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from emulated import built_kernels, close, emulated_cp, emulated_cuda  # noqa: F401

import gpugrad as gg
from gpugrad import activations, fused, optim_rules

DTYPES = ["float32", "float64"]
GRIDS = ["launcher", "one block"]
SIZES = [1, 7, 33, 255, 1023, 4099]
WARP_WIDTHS = [1, 31, 32, 33, 1023, 1024]
BLOCK_WIDTHS = [1, 33, 1025, 4099]
SPECIAL = (88.0, -88.0, 1e4, -1e4, 0.0)


def data(rng, shape, dtype, scale=3.0, special=True):
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    flat = x.reshape(-1)
    if special and flat.size >= 8:
        flat[1 : 1 + len(SPECIAL)] = SPECIAL
    return x


def ref(fn, *args, **kwargs):
    with np.errstate(all="ignore"):
        return fn(*args, **kwargs)


def f64(a):
    return np.asarray(a, np.float64)


def runs(*files):
    """Tag a test with the kernels/ files it launches: ``pytest tests/test_emulator_kernels.py
    -k layernorm.cu`` runs one file's tests (``-k`` matches names set on a test function)."""

    def tag(fn):
        for f in files:
            setattr(fn, f, True)
        fn.kernel_files = files
        return fn

    return tag


# ----------------------------------------------------------------------------- activations

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh"]


@runs("activations.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_kernels(cp, cuda, name, n, offset, grid, dtype):
    rng = np.random.default_rng(n)
    host = data(rng, n + 1, dtype)
    host[-1] = np.nan  # NaN passes through every activation
    x_big, dout_big = cp.asarray(host), cp.asarray(data(rng, n + 1, dtype, 1.0))
    x, dout = x_big[offset : offset + n], dout_big[offset : offset + n]  # offset 1: misaligned
    op = gg.OPS[name]
    extra = (0.2,) if name == "leaky_relu" else ()
    attrs = {"negative_slope": 0.2} if extra else {}
    expect = ref(op.fwd, np, f64(x.get()), **attrs)
    saved = x if name == "leaky_relu" else cp.asarray(expect.astype(dtype))
    (dexpect,) = ref(op.bwd, np, f64(dout.get()), f64(saved.get()), *extra)
    scal = tuple(np.dtype(dtype).type(v) for v in extra)
    if grid == "launcher":
        out = getattr(cuda.launchers, name)(cp, x, **attrs)
        (dx,) = getattr(cuda.launchers, f"{name}_backward")(cp, dout, saved, *extra)
    else:
        out, dx = cp.empty(n, dtype), cp.empty(n, dtype)
        cuda.launch(
            "activations.cu", f"{name}_fwd", dtype, (1,), (256,), (x, out, *scal, np.int64(n))
        )
        args = (dout, saved, dx, *scal, np.int64(n))
        cuda.launch("activations.cu", f"{name}_bwd", dtype, (1,), (256,), args)
    close(out, expect, dtype, f"{name}_fwd n={n} offset={offset}")
    close(dx, dexpect, dtype, f"{name}_bwd n={n} offset={offset}")


# GELU (both forms) and SiLU: the backward kernels take the input x; erf: forward only.
X_ACTIVATIONS = {"gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "silu": ("silu", None)}


@runs("activations.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kernel", [*X_ACTIVATIONS, "erf"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_input_derivative_activation_kernels(cp, cuda, kernel, n, offset, grid, dtype):
    rng = np.random.default_rng(n + 3)
    host = data(rng, n + 1, dtype)
    host[-1] = np.nan
    x_big, dout_big = cp.asarray(host), cp.asarray(data(rng, n + 1, dtype, 1.0))
    x, dout = x_big[offset : offset + n], dout_big[offset : offset + n]
    name, mode = X_ACTIVATIONS.get(kernel, ("erf", None))
    op = gg.OPS[name]
    attrs = {} if mode is None else {"approximate": mode}
    extra = () if mode is None else (mode,)
    expect = ref(op.fwd, np, f64(x.get()), **attrs)
    if grid == "launcher":
        out = getattr(cuda.launchers, name)(cp, x, **attrs)
    else:
        out = cp.empty(n, dtype)
        cuda.launch("activations.cu", f"{kernel}_fwd", dtype, (1,), (256,), (x, out, np.int64(n)))
    close(out, expect, dtype, f"{kernel}_fwd n={n} offset={offset}")
    if kernel == "erf":
        return
    (dexpect,) = ref(op.bwd, np, f64(dout.get()), f64(x.get()), *extra)
    if grid == "launcher":
        (dx,) = getattr(cuda.launchers, f"{name}_backward")(cp, dout, x, *extra)
    else:
        dx = cp.empty(n, dtype)
        args = (dout, x, dx, np.int64(n))
        cuda.launch("activations.cu", f"{kernel}_bwd", dtype, (1,), (256,), args)
    close(dx, dexpect, dtype, f"{kernel}_bwd n={n} offset={offset}")


# ----------------------------------------------------------------------------- bias + act

ACT_CODES = activations.CODES  # GELU and SiLU: their backward reads z and b


@runs("bias_act.cu")
@pytest.mark.parametrize("rows_grid", [1, 3, "launcher"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 31), (5, 32), (9, 33), (3, 1025)])
@pytest.mark.parametrize("act", list(ACT_CODES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_act_kernels(cp, cuda, act, shape, rows_grid, dtype):
    rng = np.random.default_rng(shape[1])
    z, b = data(rng, shape, dtype), data(rng, shape[-1:], dtype, special=False)
    dout = data(rng, shape, dtype, 1.0)
    op = gg.OPS["bias_act"]
    expect = ref(op.fwd, np, f64(z), f64(b), activation=act, negative_slope=0.1)
    saved = expect.astype(dtype)
    dz_ref, db_ref = ref(op.bwd, np, f64(dout), f64(saved), act, 0.1, (True, True), f64(z), f64(b))
    n, m = shape
    slope = np.dtype(dtype).type(0.1)
    z_dev, b_dev = cp.asarray(z), cp.asarray(b)
    if rows_grid == "launcher":
        out = cuda.launchers.bias_act(cp, z_dev, b_dev, activation=act, negative_slope=0.1)
        dz, db = cuda.launchers.bias_act_backward(
            cp, cp.asarray(dout), cp.asarray(saved), act, 0.1, (True, True), z_dev, b_dev
        )
    else:
        out, dz, db = cp.empty(shape, dtype), cp.empty(shape, dtype), cp.zeros(m, dtype)
        code = np.int32(ACT_CODES[act])
        args = (z_dev, b_dev, out, np.int64(n), np.int64(m), code, slope)
        cuda.launch("bias_act.cu", "bias_act_fwd", dtype, (1,), (256,), args)
        # z and b only for the activations whose derivative needs z + b; null otherwise
        null = np.uint64(0)
        pre = (z_dev, b_dev) if act in activations.FROM_INPUT else (null, null)
        args = (cp.asarray(dout), cp.asarray(saved), *pre, dz, db, np.int64(n), np.int64(m))
        args += (code, slope)
        grid = (math.ceil(m / 32), rows_grid)  # few row slices: each loops over rows
        cuda.launch("bias_act.cu", "bias_act_bwd", dtype, grid, (32, 8), args)
    close(out, expect, dtype, f"bias_act_fwd {act}")
    close(dz, dz_ref, dtype, f"bias_act_bwd dz {act}")
    close(db, db_ref, dtype, f"bias_act_bwd db {act}", tol=dict(rtol=1e-4, atol=1e-5))


# ----------------------------------------------------------------------------- softmax family


def _rows_grid(kind, n, grid):
    if grid == "one block":
        return (1,)
    return (math.ceil(n / 8),) if kind == "warp" else (n,)


WIDTH_CASES = [("warp", c) for c in WARP_WIDTHS] + [("block", c) for c in BLOCK_WIDTHS]


@runs("softmax_xent.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("kind,c", WIDTH_CASES)
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_kernels(cp, cuda, kind, c, log, grid, dtype):
    n = 9
    rng = np.random.default_rng(c)
    x, dout = data(rng, (n, c), dtype), data(rng, (n, c), dtype, 1.0)
    name = "log_softmax" if log else "softmax"
    op = gg.OPS[name]
    expect = ref(op.fwd, np, f64(x), axis=-1)
    out_host = expect.astype(dtype)
    (dexpect,) = ref(op.bwd, np, f64(dout), f64(out_host), -1)
    out, dx = cp.empty((n, c), dtype), cp.empty((n, c), dtype)
    g = _rows_grid(kind, n, grid)
    args = (cp.asarray(x), np.int64(n), np.int64(c), out)
    cuda.launch("softmax_xent.cu", f"{name}_fwd_{kind}", dtype, g, (256,), args)
    args = (cp.asarray(dout), cp.asarray(out_host), np.int64(n), np.int64(c), dx)
    cuda.launch("softmax_xent.cu", f"{name}_bwd_{kind}", dtype, g, (256,), args)
    close(out, expect, dtype, f"{name}_fwd_{kind} c={c}")
    close(dx, dexpect, dtype, f"{name}_bwd_{kind} c={c}", tol=dict(rtol=1e-4, atol=1e-5))


def xent_reference(logits, targets, mean):
    per_row, ex = ref(fused.cross_entropy.fwd, np, f64(logits), targets, reduction="none")
    dlogits = ex["dlogits"]
    if mean:
        count = int((targets != -100).sum())
        dlogits = dlogits * (1.0 / count if count else 0.0)
    return per_row, dlogits


def run_xent(cp, cuda, kind, logits, targets, mean, grid=(1,)):
    n, c = logits.shape
    dtype = logits.dtype
    count = cp.asarray(np.array([(targets != -100).sum()], np.int64))
    per_row, dlogits = cp.empty(n, dtype), cp.empty((n, c), dtype)
    args = (cp.asarray(logits), cp.asarray(targets), np.int64(n), np.int64(c), np.int64(-100))
    args += (count, np.int32(mean), per_row, dlogits)
    cuda.launch("softmax_xent.cu", f"xent_fwd_{kind}", dtype, grid, (256,), args)
    return per_row, dlogits


@runs("softmax_xent.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("kind,c", WIDTH_CASES)
@pytest.mark.parametrize("mean", [0, 1])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_kernels(cp, cuda, kind, c, mean, grid, dtype):
    n = 9
    rng = np.random.default_rng(c + 7)
    logits = data(rng, (n, c), dtype)
    targets = rng.integers(0, c, n)
    targets[::3] = -100  # ignored rows
    per_row_ref, dlogits_ref = xent_reference(logits, targets, mean)
    per_row, dlogits = run_xent(cp, cuda, kind, logits, targets, mean, _rows_grid(kind, n, grid))
    close(per_row, per_row_ref, dtype, f"xent_fwd_{kind} loss c={c}")
    close(dlogits, dlogits_ref, dtype, f"xent_fwd_{kind} dlogits c={c}")


# ----------------------------------------------------------------------------- losses


@runs("losses.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("loss", ["bce_logits_fwd", "mse_fwd"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_loss_kernels(cp, cuda, loss, n, grid, dtype):
    rng = np.random.default_rng(n)
    a, t = data(rng, n, dtype), rng.random(n).astype(dtype)
    if loss == "bce_logits_fwd":
        s, tt = f64(a), f64(t)
        per_ref = ref(lambda: np.maximum(s, 0) - s * tt + np.log1p(np.exp(-np.abs(s))))
        grad_ref = ref(lambda: 1 / (1 + np.exp(-s)) - tt) * 0.5
    else:
        d = f64(a) - f64(t)
        per_ref, grad_ref = d * d, d * 0.5
    blocks = 1 if grid == "one block" else math.ceil(n / 256)
    per_item, grad = cp.empty(n, dtype), cp.empty(n, dtype)
    partials = cp.zeros(blocks, np.float64)
    args = (
        cp.asarray(a),
        cp.asarray(t),
        np.int64(n),
        np.dtype(dtype).type(0.5),
        per_item,
        grad,
        partials,
    )
    cuda.launch("losses.cu", loss, dtype, (blocks,), (256,), args)
    close(per_item, per_ref, dtype, f"{loss} per item")
    close(grad, grad_ref, dtype, f"{loss} gradient")
    close(partials.get().sum(), f64(per_item.get()).sum(), "float64", f"{loss} partial sums")


# ----------------------------------------------------------------------------- matmul


def gemm_tol(expect, dtype):
    # Sums of K products: the error scales with the largest magnitude, not each element's.
    scale = float(np.abs(expect).max()) if expect.size else 1.0
    rel = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    return dict(rtol=rel, atol=rel * max(scale, 1.0))


MATMUL_SHAPES = [(1, 1, 1), (65, 33, 17), (130, 36, 68), (64, 64, 64), (200, 20, 4), (7, 4, 260)]


@runs("matmul.cu")
@pytest.mark.parametrize("small_grid", [False, True])
@pytest.mark.parametrize("variant", ["vec", "scalar"])
@pytest.mark.parametrize("m,k,n", MATMUL_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matmul_kernels(cp, cuda, m, k, n, variant, small_grid, dtype):
    if variant == "vec" and (k % 4 or n % 4):
        pytest.skip(
            f"matmul_tiled_vec needs K and N multiples of 4 (here {k}, {n}); the "
            "scalar variant covers this shape"
        )
    rng = np.random.default_rng(m * n)
    a, b = data(rng, (m, k), dtype, 1.0, special=False), data(rng, (k, n), dtype, 1.0, False)
    c = cp.empty((m, n), dtype)
    grid = (1, 1) if small_grid else (math.ceil(n / 64), math.ceil(m / 64))
    args = (cp.asarray(a), cp.asarray(b), c, np.int32(m), np.int32(n), np.int32(k))
    cuda.launch("matmul.cu", f"matmul_tiled_{variant}", dtype, grid, (256,), args)
    expect = f64(a) @ f64(b)
    close(
        c, expect, dtype, f"matmul_tiled_{variant} {m}x{k}x{n} grid {grid}", gemm_tol(expect, dtype)
    )


@runs("matmul.cu")
def test_matmul_grid_y_smaller_than_the_row_tiles(cp, cuda):
    """M far beyond grid.y * 64 rows: the kernel must loop over row tiles (grid.y is capped at
    65535 on a GPU, which M >= 4,194,241 exceeds with one tile per block)."""
    m, k, n = 64 * 9 + 5, 8, 12
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n))
    b = b.astype(np.float32)
    for variant in ("vec", "scalar"):
        c = cp.empty((m, n), np.float32)
        args = (cp.asarray(a), cp.asarray(b), c, np.int32(m), np.int32(n), np.int32(k))
        cuda.launch("matmul.cu", f"matmul_tiled_{variant}", np.float32, (1, 2), (256,), args)
        expect = f64(a) @ f64(b)
        close(c, expect, "float32", f"{variant} with grid.y = 2", gemm_tol(expect, "float32"))


@runs("matmul.cu")
def test_matmul_launcher_keeps_grid_y_within_cudas_limit(cp, cuda, monkeypatch):
    seen = []
    monkeypatch.setattr(cuda.launchers, "launch", lambda *a, **k: seen.append(a[3]))
    m = 4_194_241
    cuda.launchers.matmul_tiled(cp.ones((m, 1), np.float32), cp.ones((1, 1), np.float32))
    assert seen and seen[0][1] <= 65535, f"grid {seen[0]}"


# ----------------------------------------------------------------------------- optimizers

OPTIM_SIZES = [(3, 5), (70000,), (1,), (131073,)]  # spans chunk boundaries (65536 elements)


def _tables(cp, groups):
    sizes = [int(np.prod(s)) for s in OPTIM_SIZES]
    chunk_tensor, chunk_start = [], []
    for t, size in enumerate(sizes):
        for start in range(0, size, cuda_chunk()):
            chunk_tensor.append(t)
            chunk_start.append(start)
    ptrs = [
        cp.asarray(np.array([0 if a is None else a.data.ptr for a in g], np.uint64)) for g in groups
    ]
    return (
        ptrs,
        cp.asarray(np.array(sizes, np.int64)),
        cp.asarray(np.array(chunk_tensor, np.int32)),
        cp.asarray(np.array(chunk_start, np.int64)),
        len(chunk_tensor),
    )


def cuda_chunk():
    from gpugrad.backends.cuda import CHUNK

    return CHUNK


def _launch_step(cp, cuda, name, groups, hp, grid):
    ptrs, sizes, chunk_tensor, chunk_start, n_chunks = _tables(cp, groups)
    args = (*ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks), np.int64(cuda_chunk()))
    args += (cp.asarray(hp), np.int32(hp.shape[1]))
    g = (1,) if grid == "one block" else (n_chunks,)
    cuda.launch("optim.cu", name, groups[0][0].dtype, g, (256,), args)


@runs("optim.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_sgd(cp, cuda, grid, dtype):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s).astype(dtype) for s in OPTIM_SIZES]
    grads = [rng.standard_normal(s).astype(dtype) for s in OPTIM_SIZES]
    bufs = [rng.random(s).astype(dtype) for s in OPTIM_SIZES]
    hp = np.array(
        [
            [1, 0.1, 0.9, 0.1, 0.01, 1, 0, 0],
            [1, 0.05, 0.9, 0, 0, 0, 1, 1],
            [0, 0.1, 0, 0, 0, 0, 0, 0],
            [1, 0.1, 0.5, 0, 0, 0, 0, 0],
        ],
        np.float64,
    )
    dp, dg, db = ([cp.asarray(a) for a in arrs] for arrs in (params, grads, bufs))
    _launch_step(cp, cuda, "sgd_step", [dp, dg, db], hp, grid)
    p64, b64 = [f64(p) for p in params], [f64(b) for b in bufs]
    optim_rules.sgd_rows(p64, [f64(g) for g in grads], b64, hp)
    for k in range(len(OPTIM_SIZES)):
        close(dp[k], p64[k], dtype, f"sgd param {k}")
        close(db[k], b64[k], dtype, f"sgd buf {k}")


@runs("optim.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_adam_and_adamw(cp, cuda, grid, dtype):
    rng = np.random.default_rng(2)
    arrays = {k: [rng.standard_normal(s).astype(dtype) for s in OPTIM_SIZES] for k in "pgmvx"}
    arrays["v"] = [np.abs(v) for v in arrays["v"]]
    arrays["x"] = [np.abs(v) for v in arrays["x"]]
    hp = np.array(
        [
            [1, 1e-3, 0.9, 0.999, 1e-8, 0.01, 0, 0, 0, 1],
            [1, 1e-2, 0.8, 0.99, 1e-6, 0.1, 1, 1, 1, 7],
            [1, 1e-3, 0.9, 0.999, 1e-8, 0, 0, 1, 0, 3],
            [1, 1e-3, 0.9, 0.999, 1e-8, 0.1, 1, 0, 0, 2],
        ],
        np.float64,
    )
    vmax_used = [hp[k, 6] != 0 for k in range(len(OPTIM_SIZES))]
    dev = {k: [cp.asarray(a) for a in v] for k, v in arrays.items()}
    dvmax = [x if used else None for x, used in zip(dev["x"], vmax_used, strict=True)]
    _launch_step(cp, cuda, "adam_step", [dev["p"], dev["g"], dev["m"], dev["v"], dvmax], hp, grid)
    ref64 = {k: [f64(a) for a in v] for k, v in arrays.items()}
    rvmax = [x if used else None for x, used in zip(ref64["x"], vmax_used, strict=True)]
    ref(optim_rules.adam_rows, ref64["p"], ref64["g"], ref64["m"], ref64["v"], rvmax, hp)
    for k in range(len(OPTIM_SIZES)):
        for key in "pmv" + ("x" if vmax_used[k] else ""):
            close(dev[key][k], ref64[key][k], dtype, f"adam {key} {k}")


# ----------------------------------------------------------------------------- layernorm


@runs("layernorm.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("kind,d", WIDTH_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_kernels(cp, cuda, kind, d, grid, dtype):
    """Rows and the weight/bias column sums, with the launcher's grids and with one block
    (every row loop and every row-slice loop loops)."""
    n = 9
    rng = np.random.default_rng(d + 11)
    x = data(rng, (n, d), dtype, special=False) * 2 + 1
    w = rng.uniform(0.5, 1.5, d).astype(dtype)
    b = rng.standard_normal(d).astype(dtype)
    dout = data(rng, (n, d), dtype, 1.0, special=False)
    op = gg.OPS["layer_norm"]
    expect, stats = ref(op.fwd, np, f64(x), f64(w), f64(b))
    grads = ref(op.bwd, np, f64(dout), stats["mean"], stats["rstd"], f64(x), f64(w), f64(b), 1,
                1e-5, (True, True, True))  # fmt: skip
    xs, ws, bs, ds = (cp.asarray(a) for a in (x, w, b, dout))
    if grid == "launcher":
        out, got = cuda.layernorm.layer_norm(cp, xs, ws, bs)
        mean, rstd = got["mean"].reshape(-1), got["rstd"].reshape(-1)
        dx, dw, db = cuda.layernorm.layer_norm_backward(
            cp, ds, got["mean"], got["rstd"], xs, ws, bs, 1, 1e-5, (True, True, True)
        )
    else:
        out, mean, rstd = cp.empty((n, d), dtype), cp.empty(n, dtype), cp.empty(n, dtype)
        eps = np.dtype(dtype).type(1e-5)
        args = (xs, ws, bs, np.int64(n), np.int64(d), eps, out, mean, rstd)
        cuda.launch("layernorm.cu", f"layernorm_fwd_{kind}", dtype, (1,), (256,), args)
        dx = cp.empty((n, d), dtype)
        args = (ds, xs, mean, rstd, ws, np.int64(n), np.int64(d), dx)
        cuda.launch("layernorm.cu", f"layernorm_bwd_{kind}", dtype, (1,), (256,), args)
        gx = math.ceil(d / 32)
        part_w, part_b = cp.empty((1, d), dtype), cp.empty((1, d), dtype)
        args = (ds, xs, mean, rstd, np.int64(n), np.int64(d), part_w, part_b)
        cuda.launch("layernorm.cu", "layernorm_param_bwd", dtype, (gx, 1), (32, 8), args)
        dw, db = part_w[0], part_b[0]
    close(out, expect, dtype, f"layernorm_fwd_{kind} d={d}")
    close(mean, stats["mean"].reshape(-1), dtype, f"layernorm mean d={d}")
    close(rstd, stats["rstd"].reshape(-1), dtype, f"layernorm rstd d={d}")
    loose = dict(rtol=1e-4, atol=1e-5)  # row and column sums in float32
    for what, got_, want in zip(("dx", "dw", "db"), (dx, dw, db), grads, strict=True):
        close(got_, want, dtype, f"layernorm {what} d={d}", tol=loose)


@runs("optim.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_rmsprop(cp, cuda, grid, dtype):
    rng = np.random.default_rng(3)
    arrays = {k: [rng.standard_normal(s).astype(dtype) for s in OPTIM_SIZES] for k in "pgsab"}
    arrays["s"] = [np.abs(v) + 1.0 for v in arrays["s"]]  # centered rows need s - a^2 > 0
    arrays["a"] = [v * 0.1 for v in arrays["a"]]
    hp = np.array(  # centered + momentum; alpha < 0.5 (lerp's other form) + wd + maximize;
        [  # inactive; momentum only
            [1, 1e-2, 0.99, 1e-8, 0.0, 0.9, 1, 0],
            [1, 1e-3, 0.3, 1e-6, 0.1, 0.0, 1, 1],
            [0, 1e-2, 0.99, 1e-8, 0.0, 0.0, 0, 0],
            [1, 1e-2, 0.9, 1e-8, 0.0, 0.5, 0, 0],
        ],
        np.float64,
    )
    centered = [hp[k, 6] != 0 for k in range(len(OPTIM_SIZES))]
    momentum = [hp[k, 5] != 0 for k in range(len(OPTIM_SIZES))]
    dev = {k: [cp.asarray(a) for a in v] for k, v in arrays.items()}
    da = [a if c else None for a, c in zip(dev["a"], centered, strict=True)]
    db = [b if m else None for b, m in zip(dev["b"], momentum, strict=True)]
    _launch_step(cp, cuda, "rmsprop_step", [dev["p"], dev["g"], dev["s"], da, db], hp, grid)
    r = {k: [f64(a) for a in v] for k, v in arrays.items()}
    ra = [a if c else None for a, c in zip(r["a"], centered, strict=True)]
    rb = [b if m else None for b, m in zip(r["b"], momentum, strict=True)]
    ref(optim_rules.rmsprop_rows, r["p"], r["g"], r["s"], ra, rb, hp)
    for k in range(len(OPTIM_SIZES)):
        keys = "ps" + ("a" if centered[k] else "") + ("b" if momentum[k] else "")
        for key in keys:
            close(dev[key][k], r[key][k], dtype, f"rmsprop {key} {k}")


@runs("optim.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_tensor_adagrad(cp, cuda, grid, dtype):
    rng = np.random.default_rng(4)
    params = [rng.standard_normal(s).astype(dtype) for s in OPTIM_SIZES]
    grads = [rng.standard_normal(s).astype(dtype) for s in OPTIM_SIZES]
    sums = [rng.random(s).astype(dtype) for s in OPTIM_SIZES]
    hp = np.array(  # the first step (seeds the sum), lr_decay + wd + maximize, inactive, step 7
        [
            [1, 0.1, 0.0, 0.0, 0.5, 1e-10, 0, 1],
            [1, 0.1, 0.01, 0.1, 0.0, 1e-10, 1, 3],
            [0, 0.1, 0.0, 0.0, 0.0, 1e-10, 0, 1],
            [1, 0.05, 0.1, 0.0, 0.0, 1e-6, 0, 7],
        ],
        np.float64,
    )
    dp, dg, ds = ([cp.asarray(a) for a in arrs] for arrs in (params, grads, sums))
    _launch_step(cp, cuda, "adagrad_step", [dp, dg, ds], hp, grid)
    p64, s64 = [f64(p) for p in params], [f64(v) for v in sums]
    ref(optim_rules.adagrad_rows, p64, [f64(g) for g in grads], s64, hp)
    for k in range(len(OPTIM_SIZES)):
        close(dp[k], p64[k], dtype, f"adagrad param {k}")
        close(ds[k], s64[k], dtype, f"adagrad sum {k}")


def _clip_grads(rng, dtype, special):
    grads = [(rng.standard_normal(s) * 3).astype(dtype) for s in OPTIM_SIZES]
    if special:
        grads[1][[5, 66000]] = (np.nan, np.inf)
    return grads


@runs("optim.cu")
@pytest.mark.parametrize("special", [False, True], ids=["finite", "nan-inf"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 2.5, math.inf], ids=str)
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_partials(cp, cuda, grid, dtype, norm_type, special):
    rng = np.random.default_rng(5)
    grads = _clip_grads(rng, dtype, special)
    dg = [cp.asarray(g) for g in grads]
    ptrs, sizes, chunk_tensor, chunk_start, n_chunks = _tables(cp, [dg])
    partials = cp.empty(n_chunks, np.float64)
    args = (*ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks), np.int64(cuda_chunk()))
    args += (np.float64(norm_type), partials)
    g = (1,) if grid == "one block" else (n_chunks,)
    cuda.launch("optim.cu", "grad_norm_partials", dtype, g, (256,), args)
    # one partial per chunk: the chunk's sum of |g|^p (max |g| for inf) in float64
    expect = []
    for t, start in zip(chunk_tensor.get(), chunk_start.get(), strict=True):
        a = np.abs(f64(grads[t]).reshape(-1)[start : start + cuda_chunk()])
        expect.append(ref(lambda a=a: a.max() if math.isinf(norm_type) else (a**norm_type).sum()))
    close(partials, expect, "float64", "norm partials", dict(rtol=1e-12, atol=0))
    # and through the launcher, reduced
    total = cuda.grad_norm_partial(dg, norm_type)
    if special:  # a NaN anywhere makes the sum and the max NaN
        assert math.isnan(float(total))
    elif math.isinf(norm_type):
        assert float(total) == max(expect)
    else:
        assert float(total) == pytest.approx(sum(expect), rel=1e-12)


@runs("optim.cu")
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_scale_and_clamp(cp, cuda, grid, dtype):
    rng = np.random.default_rng(6)
    grads = _clip_grads(rng, dtype, special=True)
    coef = 0.3
    for name in ("grad_scale", "grad_clamp"):
        dg = [cp.asarray(g) for g in grads]
        ptrs, sizes, chunk_tensor, chunk_start, n_chunks = _tables(cp, [dg])
        args = (*ptrs, sizes, chunk_tensor, chunk_start, np.int32(n_chunks))
        args += (np.int64(cuda_chunk()),)
        if name == "grad_scale":
            args += (cp.asarray(np.array([coef])),)
        else:
            args += (np.dtype(dtype).type(coef),)
        g = (1,) if grid == "one block" else (n_chunks,)
        cuda.launch("optim.cu", name, dtype, g, (256,), args)
        c = np.dtype(dtype).type(coef)
        for k, host in enumerate(grads):
            expect = host * c if name == "grad_scale" else np.clip(host, -c, c)  # NaN stays
            np.testing.assert_array_equal(dg[k].get(), expect, err_msg=f"{name} {k}")


def test_every_kernel_in_the_table_is_covered(emulator_kernels):
    from gpugrad.backends.cuda import KERNELS

    covered = {
        "activations.cu": {
            f"{a}_{d}" for a in [*ACTIVATIONS, *X_ACTIVATIONS] for d in ("fwd", "bwd")
        }
        | {"erf_fwd"},
        "bias_act.cu": {"bias_act_fwd", "bias_act_bwd"},
        "softmax_xent.cu": {
            f"{b}_{k}"
            for b in (
                "softmax_fwd",
                "softmax_bwd",
                "log_softmax_fwd",
                "log_softmax_bwd",
                "xent_fwd",
            )
            for k in ("warp", "block")
        },
        "losses.cu": {"bce_logits_fwd", "mse_fwd"},
        "layernorm.cu": {
            "layernorm_fwd_warp",
            "layernorm_fwd_block",
            "layernorm_bwd_warp",
            "layernorm_bwd_block",
            "layernorm_param_bwd",
        },
        "matmul.cu": {"matmul_tiled_vec", "matmul_tiled_scalar"},
        "optim.cu": {
            "sgd_step",
            "adam_step",
            "rmsprop_step",
            "adagrad_step",
            "grad_norm_partials",
            "grad_scale",
            "grad_clamp",
        },
    }
    assert {f: set(b) for f, b in KERNELS.items()} == covered
    # and `-k FILE` selects each file's tests (kernels/README.md says so)
    tagged = {f for fn in list(globals().values()) for f in getattr(fn, "kernel_files", ())}
    assert tagged == set(KERNELS)


# ----------------------------------------------------------------------------- non-finite logits
# PyTorch's answers (torch.softmax, log_softmax, cross_entropy, checked with torch 2.13): a -inf
# logit next to finite ones gets probability 0; a +inf logit, a NaN, or a row of only -inf makes
# the whole row NaN (loss and gradient too, ignored rows included); the loss of an ignored row
# is 0. The reference (ops.softmax, fused.cross_entropy) gives the same.

INF = np.inf


def numba_cross_entropy(logits, targets, reduction="none"):
    from gpugrad.backends import cpu

    return ref(cpu.cross_entropy, np, logits, targets, reduction=reduction)


@runs("softmax_xent.cu")
@pytest.mark.parametrize("kind", ["warp", "block"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_minus_inf_logit_gets_probability_zero(cp, cuda, kind, dtype):
    x = np.array([[-INF, 0.0, 1.0]], dtype)
    want_sm = [0.0, 0.2689414213699951, 0.7310585786300049]
    want_lsm = [-INF, -1.3132616875182228, -0.3132616875182228]
    for name, want in (("softmax", want_sm), ("log_softmax", want_lsm)):
        out = cp.empty((1, 3), dtype)
        cuda.launch(
            "softmax_xent.cu",
            f"{name}_fwd_{kind}",
            dtype,
            (1,),
            (256,),
            (cp.asarray(x), np.int64(1), np.int64(3), out),
        )
        close(out, [want], dtype, f"{name}_fwd_{kind} of [-inf, 0, 1]")
        close(ref(gg.OPS[name].fwd, np, x, axis=-1), [want], dtype, f"reference {name}")
    per_row, dlogits = run_xent(cp, cuda, kind, x, np.array([2]), mean=0)
    close(per_row, [0.3132616875182228], dtype, f"xent_fwd_{kind} loss, target 2")
    close(dlogits, [[0.0, 0.2689414213699951, -0.2689414213699951]], dtype, "xent dlogits")
    for target, loss in ((0, INF), (1, 1.3132616875182228)):
        per_row, _ = run_xent(cp, cuda, kind, x, np.array([target]), mean=0)
        close(per_row, [loss], dtype, f"xent_fwd_{kind} loss, target {target}")
    numba_loss, numba_ex = numba_cross_entropy(x, np.array([2]))
    close(numba_loss, [0.3132616875182228], dtype, "Numba cross_entropy loss")
    close(numba_ex["dlogits"], dlogits.get(), dtype, "Numba vs emulated dlogits")


@runs("softmax_xent.cu")
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_wide_row_starting_with_minus_inf(cp, cuda, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 1030)).astype(dtype)
    x[0, :300] = -INF
    targets = np.array([700, 3])
    expect_sm = ref(gg.OPS["softmax"].fwd, np, f64(x), axis=-1)
    assert np.isfinite(expect_sm).all()
    got = cuda.launchers.softmax(cp, cp.asarray(x), axis=-1)  # C > 1024: the block kernel
    close(got, expect_sm, dtype, "softmax_fwd_block, 300 leading -inf")
    got = cuda.launchers.log_softmax(cp, cp.asarray(x), axis=-1)
    close(got, ref(gg.OPS["log_softmax"].fwd, np, f64(x), axis=-1), dtype, "log_softmax_fwd_block")
    loss, ex = cuda.launchers.cross_entropy(cp, cp.asarray(x), cp.asarray(targets))
    loss_ref, ex_ref = ref(fused.cross_entropy.fwd, np, f64(x), targets)
    close(loss, loss_ref, dtype, "cross_entropy mean loss")
    close(ex["dlogits"], ex_ref["dlogits"], dtype, "cross_entropy dlogits")


NAN_ROWS = {
    "+inf logit": [0.0, INF, 0.0],
    "two +inf logits": [INF, INF, 0.0],
    "only -inf": [-INF, -INF, -INF],
    "a NaN": [0.0, np.nan, 1.0],
}


@runs("softmax_xent.cu")
@pytest.mark.parametrize("row", list(NAN_ROWS))
@pytest.mark.parametrize("kind", ["warp", "block"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rows_without_a_finite_answer_are_all_nan_as_in_pytorch(cp, cuda, row, kind, dtype):
    x = np.array([NAN_ROWS[row], [1.0, 2.0, 3.0]], dtype)
    nan_row = np.full(3, np.nan)
    for name in ("softmax", "log_softmax"):
        out = cp.empty((2, 3), dtype)
        cuda.launch(
            "softmax_xent.cu",
            f"{name}_fwd_{kind}",
            dtype,
            (1,),
            (256,),
            (cp.asarray(x), np.int64(2), np.int64(3), out),
        )
        expect = ref(gg.OPS[name].fwd, np, f64(x), axis=-1)
        assert np.isnan(expect[0]).all(), f"reference {name} of {row}"
        close(out, expect, dtype, f"{name}_fwd_{kind} of a row with {row}")
        assert np.isnan(out.get()[0]).all(), f"{name}_fwd_{kind} of a row with {row}"
    for target in (0, 2, -100):  # -100: the row is ignored
        targets = np.array([target, 1])
        per_row, dlogits = run_xent(cp, cuda, kind, x, targets, mean=1)
        per_row_ref, dlogits_ref = xent_reference(x, targets, mean=1)
        close(per_row, per_row_ref, dtype, f"xent_fwd_{kind} loss, {row}, target {target}")
        close(dlogits, dlogits_ref, dtype, f"xent_fwd_{kind} dlogits, {row}, target {target}")
        assert np.isnan(dlogits.get()[0]).all(), f"xent dlogits of {row}, target {target}"
        if target != -100:
            assert np.isnan(per_row.get()[0])
            numba_loss, numba_ex = numba_cross_entropy(x, targets)
            close(numba_loss, per_row_ref, dtype, f"Numba loss, {row}")
            close(
                numba_ex["dlogits"],
                ref(fused.cross_entropy.fwd, np, f64(x), targets, reduction="none")[1]["dlogits"],
                dtype,
                f"Numba dlogits, {row}",
            )
    close(nan_row, dlogits_ref[0], "float64", "reference: an ignored NaN row's gradient")


@pytest.mark.parametrize("row", list(NAN_ROWS))
def test_numba_cross_entropy_ignored_rows_agree_with_the_reference(row):
    x = np.array([NAN_ROWS[row]], np.float64)
    targets = np.array([-100])
    _, ex = numba_cross_entropy(x, targets)
    _, ex_ref = ref(fused.cross_entropy.fwd, np, x, targets, reduction="none")
    close(ex["dlogits"], ex_ref["dlogits"], "float64", f"Numba dlogits of an ignored {row} row")


@runs("activations.cu", "softmax_xent.cu")
def test_launchers_on_a_one_sm_device_loop_over_their_grids(cp, cuda):
    """With one SM the launchers cap 1-D grids at 32 blocks, so 40,000 elements or 300 rows take
    several trips around each grid-stride loop."""
    from gpugrad import cuda_emulator

    rng = np.random.default_rng(9)
    x = rng.standard_normal(40_003).astype(np.float32)
    rows = rng.standard_normal((300, 40)).astype(np.float32)
    with cuda_emulator.configured(sm_count=1):
        assert cuda.sm_count() == 1 and cuda.grid_1d(x.size, 4) == 32  # < 40 blocks needed
        close(cuda.launchers.relu(cp, cp.asarray(x)), np.maximum(f64(x), 0), "float32", "relu")
        got = cuda.launchers.softmax(cp, cp.asarray(rows), axis=-1)
        close(got, ref(gg.OPS["softmax"].fwd, np, f64(rows), axis=-1), "float32", "softmax")
    assert cuda.sm_count() == 4  # the default comes back
