"""crosscheck: run a function on two devices and compare every intermediate value and gradient.

The reference run is the CPU in float64 with the device fast paths turned off, so it is the pure
NumPy op table; the checked run is the GPU (by default) in ``dtype`` with its kernels. Each op
application is recorded in order while ``fn`` runs, so a disagreement is pinned to the first op
whose output differs, not just to the final loss.

Recording uses ``state.forward_hooks`` for the duration of each run (see ``_recording``):
every forward the dispatcher runs passes through it. The hook and ``config.kernels`` are
process-wide, so do not crosscheck from two threads at once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from . import state
from .device import move
from .tensor import Tensor


class CrossCheckError(AssertionError):
    """The two runs disagree; ``.report`` holds every comparison, ``.first`` the first failure."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report
        self.first = report.first_failure


@dataclass
class Entry:
    """One compared value: an op's output at graph position ``index``, or an input gradient."""

    index: int
    kind: str  # "forward" or "grad"
    name: str  # the op's name, or "input i"
    shape: tuple
    max_abs: float
    max_rel: float
    ok: bool
    worst: tuple | None = None  # index of the worst element when not ok
    values: tuple | None = None  # (reference, checked) at that element

    def __str__(self) -> str:
        where = f"#{self.index} {self.name}" if self.kind == "forward" else f"grad of {self.name}"
        text = (
            f"{where:<28} {str(self.shape):<16} max abs {self.max_abs:.3g}  "
            f"max rel {self.max_rel:.3g}  {'ok' if self.ok else 'DIFFERS'}"
        )
        if not self.ok and self.worst is not None:
            text += f" at {self.worst}: reference {self.values[0]!r}, checked {self.values[1]!r}"
        return text


@dataclass
class Report:
    """Every comparison in graph order (forward values first, then input gradients)."""

    devices: tuple
    dtype: np.dtype
    rtol: float
    atol: float
    entries: list[Entry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.entries)

    @property
    def first_failure(self) -> Entry | None:
        return next((e for e in self.entries if not e.ok), None)

    def __str__(self) -> str:
        ref, chk = self.devices
        head = (
            f"crosscheck: {ref} float64 (reference) vs {chk} {self.dtype}, "
            f"rtol {self.rtol}, atol {self.atol}: "
            f"{sum(e.ok for e in self.entries)}/{len(self.entries)} ok"
        )
        return "\n".join([head, *(str(e) for e in self.entries)])


@contextlib.contextmanager
def _recording(records, kernels):
    """Append (op name, output array) for every forward run, with config.kernels set."""
    saved_kernels = state.config.kernels

    def hook(op, out):
        records.append((op.name, out.copy()))  # later in-place writes must not leak in

    state.forward_hooks.append(hook)
    state.config.kernels = kernels
    try:
        yield
    finally:
        state.forward_hooks.remove(hook)
        state.config.kernels = saved_kernels


def _copy_inputs(inputs, dtype, device):
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            data = x.numpy()
            if data.dtype.kind == "f":
                data = data.astype(dtype)
            out.append(Tensor(data, device=device, requires_grad=x.requires_grad))
        else:
            out.append(x)
    return out


def _run(fn, inputs, dtype, device, kernels, cotangent):
    leaves = _copy_inputs(inputs, dtype, device)
    records = []
    with _recording(records, kernels):
        out = fn(*leaves)
        if not isinstance(out, Tensor):
            raise TypeError(f"crosscheck: fn must return a Tensor, got {type(out).__name__}")
        if out.requires_grad:
            seed = None
            if out.size != 1:
                seed = Tensor(cotangent(out.shape).astype(out.dtype), device=device)
            out.backward(seed)
    grads = [(i, x.grad) for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.requires_grad]
    return records, grads


def _compare(index, kind, name, ref, chk, rtol, atol) -> Entry:
    ref = np.asarray(move(ref, "cpu") if not isinstance(ref, np.ndarray) else ref)
    chk = np.asarray(move(chk, "cpu") if not isinstance(chk, np.ndarray) else chk)
    shape = tuple(ref.shape)
    if ref.shape != chk.shape:
        return Entry(index, kind, name, shape, np.inf, np.inf, False, None, (ref.shape, chk.shape))
    r = ref.astype(np.float64)
    c = chk.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        same = (r == c) | (np.isnan(r) & np.isnan(c))  # equal infinities and NaNs agree
        err = np.where(same, 0.0, np.abs(r - c))
        err = np.where(np.isnan(err), np.inf, err)
        rel = err / np.maximum(np.abs(r), np.finfo(np.float64).tiny)
        bad = err > atol + rtol * np.abs(r)
    max_abs = float(err.max()) if err.size else 0.0
    # The relative error of values at the absolute tolerance's noise floor (a gradient that is
    # 0 up to rounding) measures nothing: it counts only where |reference| exceeds atol.
    meaningful = ~same & (np.abs(r) > atol)
    max_rel = float(np.where(meaningful, rel, 0.0).max()) if err.size else 0.0
    if not bad.any():
        return Entry(index, kind, name, shape, max_abs, max_rel, True)
    worst = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), r.shape)
    worst = tuple(int(w) for w in worst)
    return Entry(index, kind, name, shape, max_abs, max_rel, False, worst, (r[worst], c[worst]))


def crosscheck(
    fn,
    inputs,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    dtype=np.float32,
    devices=("cpu", "cuda"),
    seed: int = 0,
) -> Report:
    """Compare ``fn`` on ``devices[1]`` in ``dtype`` against ``devices[0]`` in float64.

    Every op's forward value is compared in graph order, then the gradient of every input with
    ``requires_grad=True`` (a non-scalar output is contracted with a fixed random cotangent).
    The reference run uses the op table's xp forwards only (``config.kernels`` off); the checked
    run uses the fast paths as configured. Returns the report, or raises ``CrossCheckError``
    naming the first diverging node. ``devices=("cpu", "cpu")`` checks the CPU fast paths and
    float32 arithmetic against float64 NumPy, no GPU needed.

    >>> import gpugrad as gg
    >>> x = gg.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    >>> gg.crosscheck(lambda x: x.relu().sum(), [x], devices=("cpu", "cpu")).ok
    True
    """
    from .device import parse_device

    if isinstance(inputs, Tensor):
        inputs = [inputs]
    dtype = np.dtype(dtype)
    ref_dev, chk_dev = (parse_device(d) for d in devices)
    rng = np.random.default_rng(seed)
    cache = {}

    def cotangent(shape):  # one random direction per shape, shared by both runs
        if shape not in cache:
            cache[shape] = rng.standard_normal(shape)
        return cache[shape]

    ref_records, ref_grads = _run(fn, inputs, np.float64, ref_dev, False, cotangent)
    chk_records, chk_grads = _run(fn, inputs, dtype, chk_dev, state.config.kernels, cotangent)
    report = Report((ref_dev, chk_dev), dtype, rtol, atol)
    for i, (a, b) in enumerate(zip(ref_records, chk_records, strict=False)):
        if a[0] != b[0]:
            raise CrossCheckError(
                f"crosscheck: the two runs took different paths at op #{i}: {a[0]!r} on "
                f"{ref_dev} but {b[0]!r} on {chk_dev}; fn must not branch on device or dtype",
                report,
            )
        report.entries.append(_compare(i, "forward", a[0], a[1], b[1], rtol, atol))
    if len(ref_records) != len(chk_records):
        raise CrossCheckError(
            f"crosscheck: {len(ref_records)} ops ran on {ref_dev} but {len(chk_records)} on "
            f"{chk_dev}",
            report,
        )
    for (i, g_ref), (_, g_chk) in zip(ref_grads, chk_grads, strict=True):
        name = f"input {i}"
        if g_ref is None or g_chk is None:
            report.entries.append(
                Entry(len(report.entries), "grad", name, (), 0.0, 0.0, g_ref is g_chk)
            )
            continue
        report.entries.append(
            _compare(len(report.entries), "grad", name, g_ref.data, g_chk.data, rtol, atol)
        )
    first = report.first_failure
    if first is not None:
        where = (
            f"op #{first.index} '{first.name}'" if first.kind == "forward" else f"the {first.name}"
        )
        raise CrossCheckError(
            f"crosscheck: {chk_dev} {dtype} first diverges from {ref_dev} float64 at {where} "
            f"{first.shape}: max abs error {first.max_abs:.3g}, max rel {first.max_rel:.3g} "
            f"(rtol {rtol}, atol {atol})"
            + (
                f"; worst element {first.worst}: reference {first.values[0]!r}, "
                f"checked {first.values[1]!r}"
                if first.worst is not None
                else ""
            )
            + f"\n{report}",
            report,
        )
    return report
