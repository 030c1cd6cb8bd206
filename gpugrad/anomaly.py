"""Anomaly mode: stop at the first op whose output or gradient is NaN or infinite.

``with gg.detect_anomaly(): loss.backward()`` checks every forward value recorded and every
gradient computed inside the block, and raises naming the op, the shapes, and the line of user
code that created the node. It costs a scan of every array, so it is for debugging only.
"""

from __future__ import annotations

import os
import traceback

from . import state

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


class detect_anomaly:
    """Context manager: raise at the first NaN/Inf produced in forward or backward."""

    def __enter__(self):
        self._prev = state.anomaly.enabled
        state.anomaly.enabled = True
        return self

    def __exit__(self, *exc):
        state.anomaly.enabled = self._prev
        return False


def _user_frame() -> str:
    for frame in reversed(traceback.extract_stack()[:-1]):
        if not os.path.abspath(frame.filename).startswith(_PACKAGE):
            return f"{frame.filename}:{frame.lineno}"
    return "<unknown>"


def _bad(xp, array) -> bool:
    return array.dtype.kind == "f" and not bool(xp.isfinite(array).all())


def on_forward(node, out) -> None:
    node.where = _user_frame()
    if _bad(node.xp, out):
        raise FloatingPointError(
            f"anomaly: '{node.op.name}' produced NaN/Inf in its output {node.shape} "
            f"(inputs {list(node.in_shapes)}), created at {node.where}"
        )


def check_grads(node, grads) -> None:
    for i, g in enumerate(grads):
        if g is not None and _bad(node.xp, g):
            where = (
                f"the node was created at {node.where}"
                if node.where is not None
                else "the node was created outside detect_anomaly() (run the forward inside "
                "it to see the line)"
            )
            raise FloatingPointError(
                f"anomaly: the backward of '{node.op.name}' produced NaN/Inf in the gradient of "
                f"input {i} {node.in_shapes[i]} (output {node.shape}); {where}"
            )
