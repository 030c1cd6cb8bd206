"""Shape and indexing ops: reshape, transpose, broadcast_to, expand_dims, squeeze, getitem,
setitem, scatter_add, embedding, concatenate, stack, and to_device."""

from __future__ import annotations

from ..device import move
from ..dispatch import op
from ..state import nondeterministic


@op("reshape", saves=("x_shape",), view=True)
def reshape(xp, x, *, shape):
    return x.reshape(shape)


@reshape.backward
def reshape_backward(xp, dout, shape):
    return (dout.reshape(shape),)


@op("transpose", saves=("axes",), view=True)
def transpose(xp, x, *, axes=None):
    return x.transpose(axes)


@transpose.backward
def transpose_backward(xp, dout, axes):
    if axes is None:
        return (dout.transpose(),)
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a % len(axes)] = i
    return (dout.transpose(inverse),)


@op("broadcast_to", view=True)
def broadcast_to(xp, x, *, shape):
    return xp.broadcast_to(x, shape)


@broadcast_to.backward
def broadcast_to_backward(xp, dout):
    return (dout,)  # the engine sums the broadcast dims away


@op("expand_dims", saves=("x_shape",), view=True)
def expand_dims(xp, x, *, axis):
    return xp.expand_dims(x, axis)


expand_dims.backward(reshape_backward)


@op("squeeze", saves=("x_shape",), view=True)
def squeeze(xp, x, *, axis=None):
    return xp.squeeze(x, axis)


squeeze.backward(reshape_backward)


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, int | slice) for i in items)


@op("getitem", saves=("x_shape", "index"), view=True, owns=True)
def getitem(xp, x, *, index):
    return x[index]


@getitem.backward
def getitem_backward(xp, dout, shape, index):
    dx = xp.zeros(shape, dout.dtype)
    if _is_basic_index(index):
        dx[index] = dout  # basic indexing never repeats an element
    else:
        if xp.__name__ == "cupy":  # cupy.add.at scatters with atomicAdd
            nondeterministic("getitem's backward with an integer-array index on the GPU")
        xp.add.at(dx, index, dout)  # integer arrays may repeat: scatter-add
    return (dx,)


@op("scatter_add", saves=("index",), owns=(False, True))
def scatter_add(xp, x, value, *, index):
    """A copy of x with ``value`` added at ``index``; repeated indices add up (``np.add.at``).

    The backward of integer-array indexing, as an op of its own so that it too has a
    gradient (create_graph) and an embedding lookup can use it.
    """
    out = x.copy()
    if xp.__name__ == "cupy":  # cupy.add.at scatters with atomicAdd
        nondeterministic("scatter_add (integer-array index) on the GPU")
    xp.add.at(out, index, value)
    return out


@scatter_add.backward
def scatter_add_backward(xp, dout, index):
    return dout, dout[index]


@op("embedding", saves=("weight_shape", "indices", "padding_idx"), owns=True)
def embedding(xp, weight, *, indices, padding_idx=None):
    """The rows ``weight[indices]``: (*indices.shape, D) from a (V, D) table.

    Backward scatter-adds each row's gradient into its table row (repeated indices add up);
    the row ``padding_idx`` gets no gradient (PyTorch's padding_idx). The indices are an
    attribute, like getitem's index: they are never differentiated.
    """
    return xp.take(weight, indices, axis=0)


@embedding.backward
def embedding_backward(xp, dout, shape, indices, padding_idx):
    if padding_idx is not None:
        keep = (indices != padding_idx).reshape(indices.shape + (1,))
        dout = xp.where(keep, dout, 0)
    dw = xp.zeros(shape, dout.dtype)
    if xp.__name__ == "cupy":  # cupy.add.at scatters with atomicAdd
        nondeterministic("embedding's backward (a scatter-add of repeated indices) on the GPU")
    xp.add.at(dw, indices, dout)
    return (dw,)


@op("setitem", saves=("index",), owns=(True, False))
def setitem(xp, x, value, *, index):
    """``x[index] = value`` as a new array (in-place writes record this, then copy back)."""
    out = x.copy()
    out[index] = value
    return out


@setitem.backward
def setitem_backward(xp, dout, index):
    dx = dout.copy()
    dx[index] = 0  # overwritten elements no longer depend on x
    return dx, dout[index]


@op("concatenate", saves=("sizes", "axis"))
def concatenate(xp, *xs, axis=0):
    out = xp.concatenate(xs, axis=axis)
    return out, {"sizes": [x.shape[axis] for x in xs]}


@concatenate.backward
def concatenate_backward(xp, dout, sizes, axis):
    bounds = [0]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    index = [slice(None)] * dout.ndim
    grads = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        index[axis] = slice(lo, hi)
        grads.append(dout[tuple(index)])
    return tuple(grads)


@op("stack", saves=("count", "axis"), owns=True)
def stack(xp, *xs, axis=0):
    return xp.stack(xs, axis=axis), {"count": len(xs)}


@stack.backward
def stack_backward(xp, dout, count, axis):
    return tuple(xp.take(dout, i, axis=axis) for i in range(count))


@op("to_device", saves=("source",), owns=True)
def to_device(xp, x, *, device, source):
    return move(x, device)


@to_device.backward
def to_device_backward(xp, dout, source):
    # A recorded tensor (create_graph) moves with a to_device op of its own.
    return (dout.to(source) if hasattr(dout, "_node") else move(dout, source),)
