"""``cupy.ufunc`` on the emulated device: NumPy's ufunc of the same name on device arrays."""

from __future__ import annotations

import numpy as np

from ._ndarray import UFUNCS, _call, _Ctx, _unwrap, ndarray


class ufunc:
    """cupy.ufunc over NumPy's ufunc of the same name."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.name = self.__name__ = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.types = np_ufunc.types

    def __call__(self, *args, **kwargs):
        return _call(self._u, args, kwargs)

    def reduce(self, *args, **kwargs):
        return _call(self._u.reduce, args, kwargs)

    def accumulate(self, *args, **kwargs):
        return _call(self._u.accumulate, args, kwargs)

    def reduceat(self, *args, **kwargs):
        return _call(self._u.reduceat, args, kwargs)

    def outer(self, *args, **kwargs):
        return _call(self._u.outer, args, kwargs)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise TypeError(f"{self.name}.at: the first argument must be a cupy.ndarray")
        ctx = _Ctx()
        target, values = _unwrap(a, ctx), _unwrap(b, ctx)
        index = _unwrap(indices, _Ctx(host_ok=True))  # host index arrays are fine, as in CuPy
        with np.errstate(all="ignore"):
            self._u.at(target, index) if b is None else self._u.at(target, index, values)

    def __repr__(self):
        return f"<ufunc '{self.name}'>"


ufunc.__module__ = "cupy"


def make_ufunc(name: str) -> ufunc:
    u = UFUNCS.get(name)
    if u is None:
        u = UFUNCS[name] = ufunc(getattr(np, name))
    return u
