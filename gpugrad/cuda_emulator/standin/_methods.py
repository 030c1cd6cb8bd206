"""The emulated ``cupy.ndarray``'s operators and its NumPy-named methods, attached to the class.

Operators take device arrays and Python or NumPy scalars (a NumPy array raises TypeError, as in
CuPy); in-place operators write into the array's own buffer. ``install_methods`` gives the class
every method CuPy's ndarray has that NumPy's has with the same meaning.
"""

from __future__ import annotations

import operator

import numpy as np

from ._ndarray import _call, _Ctx, _unwrap, ndarray


def _operand(x) -> bool:
    if isinstance(x, ndarray | np.generic | int | float | complex | bool):
        return True
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    return False


def _binary(fn, reflected=False):
    if reflected:

        def op(self, other):
            return _call(fn, (other, self)) if _operand(other) else NotImplemented

    else:

        def op(self, other):
            return _call(fn, (self, other)) if _operand(other) else NotImplemented

    return op


def _inplace(ufunc):
    def op(self, other):
        if not _operand(other):
            return NotImplemented
        ctx = _Ctx()
        o = _unwrap(other, ctx)
        with np.errstate(all="ignore"):
            ufunc(self._a, o, out=self._a)
        return self

    return op


_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "truediv": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "matmul": operator.matmul,
    "and": operator.and_,
    "or": operator.or_,
    "xor": operator.xor,
    "lshift": operator.lshift,
    "rshift": operator.rshift,
    "divmod": divmod,
}
for _name, _fn in _BINARY.items():
    setattr(ndarray, f"__{_name}__", _binary(_fn))
    setattr(ndarray, f"__r{_name}__", _binary(_fn, reflected=True))
for _name, _fn in {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}.items():
    setattr(ndarray, f"__{_name}__", _binary(_fn))
for _name, _uf in {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.true_divide,
    "floordiv": np.floor_divide,
    "mod": np.remainder,
    "pow": np.power,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "lshift": np.left_shift,
    "rshift": np.right_shift,
}.items():
    setattr(ndarray, f"__i{_name}__", _inplace(_uf))
for _name, _fn in {
    "neg": operator.neg,
    "pos": operator.pos,
    "abs": operator.abs,
    "invert": operator.invert,
}.items():
    setattr(ndarray, f"__{_name}__", (lambda fn: lambda self: _call(fn, (self,)))(_fn))


_NOT_METHODS = {"flat"}  # NumPy's flatiter would hand out host memory


def _method(fn):
    def m(self, *args, **kwargs):
        return _call(fn, (self, *args), kwargs)

    m.__name__ = fn.__name__
    return m


def install_methods(names) -> None:
    """Give ndarray every CuPy method NumPy has with the same meaning (sum, reshape, ...);
    other CuPy names raise NotEmulatedError, names CuPy lacks AttributeError."""
    for name in names:
        if name.startswith("_") or name in _NOT_METHODS or name in ndarray.__dict__:
            continue
        fn = getattr(np.ndarray, name, None)
        if callable(fn):
            setattr(ndarray, name, _method(fn))
    ndarray._gg_names = frozenset(names)
