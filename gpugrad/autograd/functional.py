"""Derivatives of whole functions: vjp, jvp, Hessian-vector products, Jacobians, Hessians.

PyTorch's ``torch.autograd.functional`` names and conventions: ``inputs`` is a tensor or a
tuple of tensors (results follow the same structure), ``func`` returns a tensor, and with
``create_graph=False`` the results carry no graph. All of them are built on ``gg.grad`` with
``create_graph=True`` where a second derivative is needed, so they run on the CPU and the GPU
alike. Jacobians and Hessians take one backward per output element: meant for small inputs.

>>> import gpugrad as gg
>>> from gpugrad.autograd.functional import hessian
>>> hessian(lambda x: (x ** 3).sum(), gg.tensor([1.0, 2.0])).tolist()
[[6.0, 0.0], [0.0, 12.0]]
"""

from __future__ import annotations

import numpy as np

from ..creation import stack
from ..engine import enable_grad

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vhp", "vjp"]


def _grad(*args, **kwargs):
    from . import grad  # the package's grad (this module is imported by it)

    return grad(*args, **kwargs)


def _prepare(inputs, create_graph):
    """(tensors to differentiate, was a single tensor): fresh leaves that require grad, or,
    under create_graph, connected copies so higher derivatives reach the caller's graph."""
    single = hasattr(inputs, "_node")
    seq = [inputs] if single else list(inputs)
    out = []
    for i, x in enumerate(seq):
        if not hasattr(x, "_node"):
            raise TypeError(f"inputs[{i}] is a {type(x).__name__}, not a Tensor")
        if x.dtype.kind != "f":
            raise TypeError(f"inputs[{i}] is {x.dtype}; only floating point inputs differentiate")
        if create_graph and x.requires_grad:
            out.append(x.clone())
        else:
            leaf = x.detach()
            leaf.requires_grad = True
            out.append(leaf)
    return out, single


def _finish(values, single, create_graph):
    values = [v if v is None or create_graph else v.detach() for v in values]
    return values[0] if single else tuple(values)


def _call(func, inputs):
    with enable_grad():
        out = func(*inputs)
    if not hasattr(out, "_node"):
        raise TypeError(f"func must return a Tensor, got {type(out).__name__}")
    return out


def _zeros_for(grads, inputs):
    """An input the output does not depend on has a zero derivative (PyTorch's strict=False)."""
    return [
        g if g is not None else type(x)(np.zeros(x.shape, x.dtype), device=x.device)
        for g, x in zip(grads, inputs, strict=True)
    ]


def vjp(func, inputs, v=None, create_graph=False):
    """(func(inputs), v^T J): the vector-Jacobian product; ``v`` like func's output (None for
    a scalar output)."""
    xs, single = _prepare(inputs, create_graph)
    out = _call(func, xs)
    grads = _grad(out, xs, v, create_graph=create_graph, allow_unused=True)
    return _finish([out], True, create_graph), _finish(_zeros_for(grads, xs), single, create_graph)


def jvp(func, inputs, v=None, create_graph=False):
    """(func(inputs), J v): the Jacobian-vector product, by the double-vjp trick (the vjp with
    a dummy cotangent u is linear in u; differentiating it in u along v gives J v)."""
    xs, single = _prepare(inputs, create_graph)
    vs = [v] if single and v is not None else v
    if vs is None:
        if any(x.size != 1 for x in xs):
            raise ValueError("jvp: v can be left out only when every input has one element")
        vs = [type(x)(np.ones(x.shape, x.dtype), device=x.device) for x in xs]
    out = _call(func, xs)
    u = type(out)(np.zeros(out.shape, out.dtype), device=out.device, requires_grad=True)
    grads = _zeros_for(_grad(out, xs, u, create_graph=True, allow_unused=True), xs)
    grads = [g if g.requires_grad else g * u.sum() for g in grads]  # keep u in every graph
    (jv,) = _grad(grads, u, list(vs), create_graph=create_graph, allow_unused=True)
    jv = jv if jv is not None else u.detach() * 0
    return _finish([out], True, create_graph), _finish([jv], True, create_graph)


def vhp(func, inputs, v, create_graph=False):
    """(func(inputs), v^T H) for a scalar func."""
    xs, single = _prepare(inputs, create_graph)
    vs = [v] if single else list(v)
    out = _call(func, xs)
    if out.size != 1:
        raise ValueError(f"vhp: func must return a single value, got shape {out.shape}")
    grads = _zeros_for(_grad(out, xs, create_graph=True, allow_unused=True), xs)
    used = [(g, w) for g, w in zip(grads, vs, strict=True) if g.requires_grad]
    if not used:  # the function is linear in its inputs: a zero Hessian
        return _finish([out], True, create_graph), _finish([g * 0 for g in grads], single, False)
    second = _grad(
        [g for g, _ in used], xs, [w for _, w in used], create_graph=create_graph,
        allow_unused=True,
    )  # fmt: skip
    return _finish([out], True, create_graph), _finish(_zeros_for(second, xs), single, create_graph)


def hvp(func, inputs, v, create_graph=False):
    """(func(inputs), H v) for a scalar func; the Hessian is symmetric, so this is vhp's
    product (one backward through the gradient, as PyTorch recommends)."""
    return vhp(func, inputs, v, create_graph)


def jacobian(func, inputs, create_graph=False):
    """d func / d inputs with shape ``out.shape + input.shape`` (a tuple for several inputs).

    One backward per output element.
    """
    xs, single = _prepare(inputs, create_graph)
    out = _call(func, xs)
    rows = [[] for _ in xs]
    flat = out.reshape(-1)
    for k in range(flat.shape[0]):
        grads = _grad(flat[k], xs, retain_graph=True, create_graph=create_graph,
                      allow_unused=True)  # fmt: skip
        for row, g in zip(rows, _zeros_for(grads, xs), strict=True):
            row.append(g)
    result = []
    for x, row in zip(xs, rows, strict=True):
        j = stack(row) if row else type(x)(np.zeros((0, *x.shape), x.dtype), device=x.device)
        result.append(j.reshape(*out.shape, *x.shape))
    return _finish(result, single, create_graph)


def hessian(func, inputs, create_graph=False):
    """d^2 func / d inputs^2 of a scalar func, shape ``input.shape + input.shape`` for one
    input (for several, a tuple of tuples: block (i, j) is d^2 f / d x_i d x_j)."""
    xs, single = _prepare(inputs, create_graph)

    def gradient(*args):
        out = _call(func, args)
        if out.size != 1:
            raise ValueError(f"hessian: func must return a single value, got shape {out.shape}")
        grads = _zeros_for(_grad(out, args, create_graph=True, allow_unused=True), args)
        return grads

    grads = gradient(*xs)
    blocks = []
    for g in grads:
        flat = g.reshape(-1)
        rows = [[] for _ in xs]
        for k in range(flat.shape[0]):
            if flat.requires_grad:
                second = _grad(flat[k], xs, retain_graph=True, create_graph=create_graph,
                               allow_unused=True)  # fmt: skip
            else:
                second = [None] * len(xs)
            for row, h in zip(rows, _zeros_for(second, xs), strict=True):
                row.append(h)
        blocks.append(
            tuple(stack(row).reshape(*g.shape, *x.shape) for row, x in zip(rows, xs, strict=True))
        )
    if single:
        return _finish([blocks[0][0]], True, create_graph)
    return tuple(_finish(list(b), False, create_graph) for b in blocks)
