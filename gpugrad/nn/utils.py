"""Gradient clipping with PyTorch's semantics (``torch.nn.utils``): ``clip_grad_norm_``,
``clip_grad_value_``, and the two halves of the first, ``get_total_norm`` and
``clip_grads_with_norm_``.

Each works on the ``.grad`` arrays in place. On a GPU one kernel launch per (device, dtype)
covers every gradient through a table of their pointers (``kernels/optim.cu``: a float64
partial per chunk, no atomics, so the norm repeats bit for bit; then one launch scales or
clamps them all). On the CPU each gradient gets one vectorized Numba pass
(``backends/cpu_optim.py``, which says why one call per array beats one call over a typed
list of them).
The clipping coefficient stays on the device, so clipping on a GPU does not wait for it unless
``error_if_nonfinite`` asks to look at the norm. Other dtypes, non-contiguous gradients, and
everything when ``gg.config.kernels`` is off take the NumPy/CuPy reference below.

Scaling bumps each gradient tensor's version counter (its values changed, as after PyTorch's
``mul_``), never a parameter's, so a graph that saved the parameters still runs backward.

>>> import gpugrad as gg
>>> w = gg.tensor([3.0, 4.0], requires_grad=True)
>>> w.grad = gg.tensor([3.0, 4.0])
>>> clip_grad_norm_([w], max_norm=1.0).item()
5.0
>>> [round(v, 4) for v in w.grad.tolist()]
[0.6, 0.8]
"""

from __future__ import annotations

import math

import numpy as np

from ..backends import cpu_optim, cuda
from ..device import move, xp_for
from ..state import config
from ..tensor import Tensor

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _tensors(name, tensors) -> list:
    if isinstance(tensors, Tensor):
        return [tensors]
    out = list(tensors)
    for i, t in enumerate(out):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: item {i} is a {type(t).__name__}, not a Tensor")
    return out


def _grads(name, parameters) -> tuple[list, list[str]]:
    """The gradients that exist, and a label naming each one's parameter for error messages."""
    grads, labels = [], []
    for k, p in enumerate(_tensors(name, parameters)):
        if p.grad is not None:
            grads.append(p.grad)
            labels.append(f"parameter {k} {p.shape}")
    return grads, labels


def _norm_type(name, norm_type) -> float:
    try:
        p = float(norm_type)
    except (TypeError, ValueError):
        p = math.nan
    if not p > 0:
        raise ValueError(
            f"{name}: norm_type must be a positive number or inf (2.0, 1.0, float('inf'), ...), "
            f"got {norm_type!r}; PyTorch's 0 and -inf (a count of nonzeros, a minimum) do not "
            "measure a gradient's size and are not supported"
        )
    return p


def _groups(tensors) -> dict:
    """{(device, dtype): (arrays for the kernels, tensors for the reference)}, in order of
    first appearance."""
    groups: dict = {}
    for t in tensors:
        fast, slow = groups.setdefault((t.device, t.dtype), ([], []))
        a = t.data
        takes = a.dtype in _KERNEL_DTYPES and a.flags.c_contiguous and _writeable(a)
        if config.kernels and takes and not isinstance(a, np.generic):
            fast.append(a)
        else:
            slow.append(t)
    return groups


def _writeable(a) -> bool:
    return getattr(a.flags, "writeable", True)  # CuPy arrays have no such flag: always


def _update(t, values) -> None:
    """Write ``values`` into t's array, or replace it when it cannot be written (a NumPy
    scalar, a read-only array)."""
    a = t.data
    if isinstance(a, np.generic) or not _writeable(a):
        t.data = t._xp.asarray(values, dtype=a.dtype).reshape(a.shape)
    else:
        a[...] = values


def _gpu(device):
    """The context that makes ``device`` current for a kernel launch."""
    return xp_for(device).cuda.Device(int(device.split(":")[1]))


# ----------------------------------------------------------------------------- the norm


@np.errstate(all="ignore")
def _reference_partial(xp, a, p):
    """sum |a|^p (max |a| for inf) in float64: the specification of the kernels' partials."""
    a = xp.abs(a.astype(xp.float64))
    if math.isinf(p):
        return a.max() if a.size else xp.zeros((), xp.float64)
    return xp.sum(a * a) if p == 2.0 else xp.sum(a) if p == 1.0 else xp.sum(a**p)


def _partial(device, fast, slow, p):
    """One group's float64 partial (0-d, on its device)."""
    xp = np if device == "cpu" else xp_for(device)
    parts = [_reference_partial(xp, t.data, p) for t in slow]
    if fast and device == "cpu":
        if math.isinf(p):
            parts += [cpu_optim.grad_max_abs(a.reshape(-1)) for a in fast]
        else:
            parts.append(math.fsum(cpu_optim.grad_norm_partial(a.reshape(-1), p) for a in fast))
    elif fast:
        with _gpu(device):
            parts.append(cuda.grad_norm_partial(fast, p))
    return _combine(xp, parts, p)


def _combine(xp, parts, p):
    parts = xp.stack([xp.asarray(v, dtype=xp.float64) for v in parts])
    return parts.max() if math.isinf(p) else parts.sum()  # max lets NaN through


def _finite(t) -> bool:
    return bool(t._xp.isfinite(t.data).all())


def _total_norm(name, grads, labels, norm_type, error_if_nonfinite) -> Tensor:
    p = _norm_type(name, norm_type)
    if not grads:
        return Tensor._wrap(np.zeros((), np.float32), "cpu")  # torch.tensor(0.0)
    first = grads[0].device
    xp = np if first == "cpu" else xp_for(first)
    groups = _groups(grads)
    parts = [move(_partial(dev, fast, slow, p), first) for (dev, _), (fast, slow) in groups.items()]
    with np.errstate(all="ignore"):
        total = _combine(xp, parts, p)
        if p == 2.0:
            total = xp.sqrt(total)
        elif not (p == 1.0 or math.isinf(p)):
            total = total ** (1.0 / p)
    # PyTorch's result has the promoted dtype of the gradients and lives on the first one's device
    dtype = np.result_type(*(dt for _, dt in groups))
    total = xp.asarray(total).astype(dtype)
    if error_if_nonfinite:
        value = float(total)  # reads the GPU: only when asked to check
        if not math.isfinite(value):
            bad = next((lab for g, lab in zip(grads, labels, strict=True) if not _finite(g)), None)
            why = (
                f"the gradient of {bad} holds NaN or inf"
                if bad is not None
                else "every gradient is finite: no single gradient is at fault, their norm "
                "overflows"
            )
            raise RuntimeError(
                f"{name}: the total {p:g}-norm of the gradients is {value}, so they cannot be "
                f"clipped; {why}. Find where it turns non-finite with gg.detect_anomaly(), or "
                "pass error_if_nonfinite=False to scale by the non-finite norm anyway (every "
                "gradient becomes 0 or NaN)"
            )
    return Tensor._wrap(total, first)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None) -> Tensor:
    """The ``norm_type``-norm of all ``tensors`` together, as if concatenated (a 0-d tensor of
    their promoted dtype on the first one's device; ``tensor(0.0)`` for none).

    ``foreach`` is accepted for PyTorch's signature; gpugrad always takes its multi-tensor pass.
    """
    tensors = _tensors("get_total_norm", tensors)
    labels = [f"tensor {k} {t.shape}" for k, t in enumerate(tensors)]
    return _total_norm("get_total_norm", tensors, labels, norm_type, error_if_nonfinite)


# ----------------------------------------------------------------------------- scaling


def _scale(grads, max_norm, total_norm) -> None:
    if not grads:
        return
    if isinstance(total_norm, Tensor):
        total, xp = total_norm.data, total_norm._xp
    else:
        total, xp = np.asarray(total_norm, np.float64), np
    one, eps = total.dtype.type(1.0), total.dtype.type(1e-6)
    with np.errstate(all="ignore"):  # inf * 0 = NaN is the answer, as in torch
        # torch's max_norm / (total + 1e-6) is reciprocal(total + 1e-6) * max_norm, in the
        # norm's dtype; clamped to 1 without a branch (a branch would read a GPU value)
        coef = xp.minimum(xp.reciprocal(total + eps) * total.dtype.type(max_norm), one)
        for (device, dtype), (fast, slow) in _groups(grads).items():
            c = move(coef, device)
            if fast and device == "cpu":
                c = dtype.type(c)
                for a in fast:
                    cpu_optim.grad_scale(a.reshape(-1), c)
            elif fast:
                with _gpu(device):
                    cuda.grad_scale(fast, c)
            for t in slow:
                _update(t, t.data * c.astype(dtype))
    for g in grads:
        g._version[0] += 1


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None) -> None:
    """Scale every gradient by min(1, max_norm / (total_norm + 1e-6)), in place.

    Always multiplies (by exactly 1 when the norm is below ``max_norm``), as PyTorch does, so a
    GPU never waits to decide.
    """
    grads, _ = _grads("clip_grads_with_norm_", parameters)
    _scale(grads, float(max_norm), total_norm)


def clip_grad_norm_(
    parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None
) -> Tensor:
    """Rescale the parameters' gradients so that their total ``norm_type``-norm is at most
    ``max_norm``; return the total norm before clipping (a 0-d tensor), as PyTorch does.

    ``norm_type``: any p > 0 or ``inf`` (the largest |g|). A non-finite norm scales every
    gradient to 0 or NaN, unless ``error_if_nonfinite=True`` raises (naming the first
    parameter whose gradient is not finite) and leaves them as they are. ``foreach`` is
    accepted for PyTorch's signature; the pass is always multi-tensor.
    """
    grads, labels = _grads("clip_grad_norm_", parameters)
    total = _total_norm("clip_grad_norm_", grads, labels, norm_type, error_if_nonfinite)
    _scale(grads, float(max_norm), total)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place (NaN stays NaN).

    ``clip_value`` is converted to each gradient's dtype, as PyTorch's ``clamp_`` does.
    """
    v = float(clip_value)
    if not v >= 0:
        raise ValueError(
            f"clip_grad_value_: clip_value must be >= 0, got {clip_value!r} (the gradients are "
            "clamped into [-clip_value, clip_value])"
        )
    grads, _ = _grads("clip_grad_value_", parameters)
    with np.errstate(all="ignore"):
        for (device, dtype), (fast, slow) in _groups(grads).items():
            if fast and device == "cpu":
                for a in fast:
                    cpu_optim.grad_clamp(a.reshape(-1), dtype.type(v))
            elif fast:
                with _gpu(device):
                    cuda.grad_clamp(fast, v)
            for t in slow:
                lim = dtype.type(v)
                _update(t, t._xp.clip(t.data, -lim, lim))
    for g in grads:
        g._version[0] += 1
