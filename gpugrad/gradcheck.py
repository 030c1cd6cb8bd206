"""gradcheck: analytic gradients against central finite differences, in float64."""

from __future__ import annotations

import numpy as np

from .engine import no_grad
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


def gradcheck(
    fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, mode="full", n_directions=4
) -> bool:
    """Check d fn / d input for every input tensor with ``requires_grad=True``.

    The check runs on the CPU in float64 (inputs are copied and converted). A non-scalar output
    is contracted with a fixed random cotangent v, so one backward checks every element of the
    vector-Jacobian product v^T J against central differences of sum(v * fn(x)).
    Returns True, or raises GradcheckError naming the input, the worst element and both values.

    ``mode="full"`` perturbs every element (2 calls of fn per element). ``mode="random"``
    checks ``n_directions`` random unit directions u through all inputs at once: the
    directional derivative <grad, u> against (f(x + eps u) - f(x - eps u)) / (2 eps), which
    costs 2 calls per direction whatever the size (Chainer's check_backward).

    >>> import gpugrad as gg
    >>> gg.gradcheck(lambda x: (x * x).sum(), [gg.tensor([1.0, -2.0], requires_grad=True)])
    True
    >>> big = gg.randn(64, 64, requires_grad=True)
    >>> gg.gradcheck(lambda x: x.tanh().sum(), [big], mode="random", n_directions=3)
    True
    """
    if mode not in ("full", "random"):
        raise ValueError(f"gradcheck: mode must be 'full' or 'random', got {mode!r}")
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
    if mode == "random":
        return _check_directions(fn, leaves, checked, scalar, eps, atol, rtol, seed, n_directions)
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


def _check_directions(fn, leaves, checked, scalar, eps, atol, rtol, seed, n_directions):
    """Directional derivatives along random unit directions against central differences."""
    grads = [
        np.zeros(leaves[i].shape)
        if leaves[i].grad is None
        else leaves[i].grad.numpy().astype(np.float64)
        for i in checked
    ]

    def value():
        with no_grad():
            return scalar(fn(*leaves))

    what = f"gradcheck (random direction {{d}} of {n_directions}, seed {seed}): the directional "
    what += f"derivative along a unit direction through inputs {checked}"
    rng = np.random.default_rng(seed + 1)
    xs = [leaves[i] for i in checked]
    return _along_random_directions(xs, grads, value, eps, atol, rtol, rng, n_directions, what)


def _along_random_directions(xs, grads, value, eps, atol, rtol, rng, n_directions, what):
    """For random unit directions u through all of ``xs``: <grads, u> against
    (value(x + eps u) - value(x - eps u)) / (2 eps); the inputs are restored after each.
    ``what`` (with ``{d}`` for the direction) opens the error message."""
    for d in range(n_directions):
        dirs = [rng.standard_normal(x.shape) for x in xs]
        norm = np.sqrt(sum(float((u * u).sum()) for u in dirs)) or 1.0
        dirs = [u / norm for u in dirs]
        analytic = sum(float((g * u).sum()) for g, u in zip(grads, dirs, strict=True))
        originals = [x.data.copy() for x in xs]
        for x, u, o in zip(xs, dirs, originals, strict=True):
            x.data[...] = o + eps * u
        plus = value()
        for x, u, o in zip(xs, dirs, originals, strict=True):
            x.data[...] = o - eps * u
        minus = value()
        for x, o in zip(xs, originals, strict=True):
            x.data[...] = o
        numeric = (plus - minus) / (2 * eps)
        if abs(analytic - numeric) > atol + rtol * abs(numeric):
            raise GradcheckError(
                f"{what.format(d=d)} is {analytic!r} analytically but {numeric!r} by central "
                f"differences (|diff| {abs(analytic - numeric):.3g} > atol {atol} + rtol {rtol} "
                "* |numeric|)"
            )
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0, n_directions=4) -> bool:
    """Check second derivatives: the gradient of the gradient against finite differences.

    With random cotangents v (for fn's output) and w (for the gradient), the scalar
    S(x) = <w, d<v, fn(x)>/dx> is differentiated once more with ``create_graph`` gradients
    and compared along ``n_directions`` random unit directions u with
    (S(x + eps u) - S(x - eps u)) / (2 eps), where each S is a first-order gradient. float64
    on the CPU, like ``gradcheck``. Returns True or raises GradcheckError.

    >>> import gpugrad as gg
    >>> gg.gradgradcheck(lambda x: (x * x * x).sum(), [gg.tensor([1.0, -2.0], requires_grad=True)])
    True
    """
    from .autograd import grad

    if isinstance(inputs, Tensor):
        inputs = [inputs]
    leaves = _as_float64_leaves(inputs)
    checked = [i for i, x in enumerate(leaves) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradgradcheck: no input has requires_grad=True, nothing to check")
    xs = [leaves[i] for i in checked]
    rng = np.random.default_rng(seed)
    out = fn(*leaves)
    v = Tensor(rng.standard_normal(out.shape)) if out.size != 1 else None
    w = [rng.standard_normal(x.shape) for x in xs]

    def first(create_graph):
        o = fn(*leaves)
        if not o.requires_grad:
            return [None] * len(xs)
        return grad(o, xs, v, create_graph=create_graph, allow_unused=True)

    def s_value():
        gs = first(False)
        return sum(
            float((g.numpy() * wi).sum()) for g, wi in zip(gs, w, strict=True) if g is not None
        )

    gs = first(True)
    terms = [(g * Tensor(wi)).sum() for g, wi in zip(gs, w, strict=True)
             if g is not None and g.requires_grad]  # fmt: skip
    if terms:
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        second = grad(total, xs, allow_unused=True)
    else:  # the gradient does not depend on the inputs: every second derivative is 0
        second = [None] * len(xs)
    hess_w = [np.zeros(x.shape) if h is None else h.numpy().astype(np.float64)
              for h, x in zip(second, xs, strict=True)]  # fmt: skip
    what = f"gradgradcheck (random direction {{d}} of {n_directions}, seed {seed}): the second "
    what += f"directional derivative (of the gradient) through inputs {checked}"
    return _along_random_directions(xs, hess_w, s_value, eps, atol, rtol, rng, n_directions, what)
