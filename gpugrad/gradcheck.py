"""gradcheck: analytic gradients against central finite differences, in float64."""

from __future__ import annotations

import numpy as np

from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


def _as_float64_leaves(inputs):
    leaves = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            leaves.append(Tensor(x.numpy().astype(np.float64), requires_grad=x.requires_grad))
        else:
            leaves.append(x)
    return leaves


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0) -> bool:
    """Check d fn / d input for every input tensor with ``requires_grad=True``.

    The check runs on the CPU in float64 (inputs are copied and converted). A non-scalar output
    is contracted with a fixed random cotangent v, so one backward checks every element of the
    vector-Jacobian product v^T J against central differences of sum(v * fn(x)).
    Returns True, or raises GradcheckError naming the input, the worst element and both values.

    >>> import gpugrad as gg
    >>> gg.gradcheck(lambda x: (x * x).sum(), [gg.tensor([1.0, -2.0], requires_grad=True)])
    True
    """
    if isinstance(inputs, Tensor):
        inputs = [inputs]
    leaves = _as_float64_leaves(inputs)
    checked = [i for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")

    out = fn(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    v = np.random.default_rng(seed).standard_normal(out.shape) if out.size != 1 else None

    def scalar(o):
        o = o.numpy().astype(np.float64)
        return float(o.sum()) if v is None else float((o * v).sum())

    if out.requires_grad:
        out.backward(None if v is None else v.reshape(out.shape))
    for i in checked:
        x = leaves[i]
        analytic = np.zeros(x.shape) if x.grad is None else x.grad.numpy().astype(np.float64)
        numeric = np.zeros(x.shape)
        flat = x.data.reshape(-1)  # a view: perturb in place, restore after
        with no_grad():
            for k in range(flat.size):
                orig = flat[k]
                flat[k] = orig + eps
                plus = scalar(fn(*leaves))
                flat[k] = orig - eps
                minus = scalar(fn(*leaves))
                flat[k] = orig
                numeric.reshape(-1)[k] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric)
        bad = err > atol + rtol * np.abs(numeric)
        if bad.any():
            worst = np.unravel_index(np.argmax(np.where(bad, err, -1)), x.shape)
            raise GradcheckError(
                f"gradcheck: input {i} {x.shape}: analytic and numeric gradients differ at "
                f"index {tuple(int(w) for w in worst)}: analytic {analytic[worst]!r}, numeric "
                f"{numeric[worst]!r} (|diff| {err[worst]:.3g} > atol {atol} + rtol {rtol} "
                f"* |numeric|; {int(bad.sum())} of {bad.size} elements off)"
            )
    return True
