"""Graph view: the compute nodes and directed edges behind a tensor, as Graphviz DOT text."""

from __future__ import annotations

from .engine import Node
from .tensor import Tensor


def _shape(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def to_dot(tensor: Tensor, name: str = "gpugrad") -> str:
    """DOT text of the graph that produced ``tensor``: one box per op (name, output shape),
    one ellipse per leaf that requires grad (parameters/inputs), edges from inputs to users.
    Render it with ``dot -Tpng``.

    >>> import gpugrad as gg
    >>> x = gg.tensor([1.0], requires_grad=True)
    >>> "mul" in gg.viz.to_dot(x * 2)
    True
    """
    lines = [f"digraph {name} {{", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    ids: dict[int, str] = {}

    def node_id(obj) -> str:
        key = id(obj)
        if key not in ids:
            ids[key] = f"n{len(ids)}"
        return ids[key]

    root = tensor._node if tensor._node is not None else tensor
    stack, seen = [root], set()
    while stack:  # iterative, like backward: deep graphs render too
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Node):
            lines.append(
                f'  {node_id(obj)} [shape=box, label="{obj.op.name}\\n{_shape(obj.shape)} '
                f'{obj.dtype}"];'
            )
            for parent in obj.parents:
                if parent is not None:
                    lines.append(f"  {node_id(parent)} -> {node_id(obj)};")
                    stack.append(parent)
        else:
            lines.append(
                f"  {node_id(obj)} [shape=ellipse, style=filled, fillcolor=lightblue, "
                f'label="leaf\\n{_shape(obj.shape)} {obj.dtype}"];'
            )
    out_id = "out"
    lines.append(f'  {out_id} [shape=plaintext, label="output {_shape(tensor.shape)}"];')
    lines.append(f"  {node_id(root)} -> {out_id};")
    lines.append("}")
    return "\n".join(lines)
