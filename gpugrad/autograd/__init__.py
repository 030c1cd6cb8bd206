"""``gg.autograd``: gradients as values, gradients of gradients, and grad mode.

``grad(outputs, inputs)`` returns d outputs / d inputs without touching any ``.grad``;
with ``create_graph=True`` the result is recorded and can be differentiated again, to any
order. ``gg.autograd.functional`` builds Hessian-vector products, Jacobians and Hessians on it.

>>> import gpugrad as gg
>>> x = gg.tensor(3.0, requires_grad=True)
>>> (dx,) = gg.grad(x ** 3, x, create_graph=True)   # 3 x^2 = 27
>>> (ddx,) = gg.grad(dx, x)                          # 6 x = 18
>>> dx.item(), ddx.item()
(27.0, 18.0)
"""

from __future__ import annotations

from ..engine import enable_grad, is_grad_enabled, no_grad
from ..graph import check_inputs, run_backward
from . import functional

__all__ = ["enable_grad", "functional", "grad", "is_grad_enabled", "no_grad"]


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph=None,
    create_graph=False,
    allow_unused=False,
):
    """d(outputs)/d(inputs), contracted with ``grad_outputs``, as a tuple (PyTorch's rules).

    ``outputs``: a tensor or a sequence of tensors; ``grad_outputs`` one per output (None for a
    scalar output means 1). ``inputs``: tensors that require grad, leaves or not (for a
    non-leaf, the gradient with respect to its value). With ``create_graph=True`` the returned
    gradients are recorded (they require grad); ``retain_graph`` defaults to ``create_graph``.
    An input the outputs do not depend on raises, naming it, unless ``allow_unused=True``,
    which gives None for it. No ``.grad`` is read or written.
    """
    single = hasattr(outputs, "_node")
    outputs = [outputs] if single else list(outputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif not isinstance(grad_outputs, list | tuple):  # one tensor or array: one output's
        grad_outputs = [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(
            f"grad: {len(outputs)} output(s) but {len(grad_outputs)} grad_outputs; give one "
            "per output (None for a scalar output)"
        )
    inputs = check_inputs("grad", inputs)
    for i, out in enumerate(outputs):
        if not out._requires_grad:
            raise RuntimeError(
                f"grad: output {i} {out.shape} does not require grad and has no graph; it does "
                "not depend on any input that requires grad"
            )
    seeds = [
        out._seed(g, "grad", create_graph) for out, g in zip(outputs, grad_outputs, strict=True)
    ]
    grads = run_backward(outputs, seeds, retain_graph, create_graph, inputs)
    result = []
    for i, (t, g) in enumerate(zip(inputs, grads, strict=True)):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} {t.shape} is not used to compute the outputs, so it has "
                    "no gradient; pass allow_unused=True to get None for it"
                )
            result.append(None)
        else:
            result.append(g if hasattr(g, "_node") else type(t)._wrap(g, t.device))
    return tuple(result)
