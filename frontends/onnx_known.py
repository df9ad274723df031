"""Import-time evaluation of small integer tensors (shape arithmetic) for the ONNX frontend.

Exported transformers compute the arguments of Reshape, Expand, Slice, ConstantOfShape and
Range with chains such as ``Shape -> Gather -> Unsqueeze -> Concat``. llmc's ops take those
arguments as plain attributes, so the frontend evaluates such chains while importing: every
small tensor whose elements are known (numbers, or symbolic dims such as ``batch*seq``) is kept
as a :class:`Known` instead of becoming a node. A known value that reaches a data op is turned
into a constant (static) or a ``dims_tensor`` node (symbolic) only then.

Static values are numpy arrays of their real dtype; symbolic ones are object arrays whose
elements are ``int`` or sympy expressions (integer dtypes only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sympy

from llmc import dims as D

#: Largest tensor (elements) tracked as a known value.
KNOWN_LIMIT = 4096
#: Float tensors are only tracked when tiny (scalars that feed Range, Clip, Pad, ...).
KNOWN_FLOAT_LIMIT = 16


class CannotEval(Exception):
    """The value cannot be decided at import; the caller emits the real op instead."""


@dataclass
class Known:
    """A tensor whose value is known at import: ``value`` (numpy array) and llmc ``dtype``."""

    value: np.ndarray
    dtype: str

    @property
    def is_static(self) -> bool:
        return self.value.dtype != object

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape)

    def dims(self) -> list:
        """Elements as a flat list of Dims (int or sympy expression)."""
        return [D.dim(v) for v in self.value.reshape(-1).tolist()]


def trackable(dtype: str, size: int) -> bool:
    """Whether a tensor of this dtype and size is small enough to keep as a known value."""
    if dtype in ("float16", "bfloat16", "float32", "float64"):
        return size <= KNOWN_FLOAT_LIMIT
    return size <= KNOWN_LIMIT


def make(values, dtype: str) -> Known:
    """A Known from numbers/dims; object dtype only where an element is symbolic."""
    arr = np.asarray(values, dtype=object)
    flat = [_norm(v) for v in arr.reshape(-1).tolist()]
    if any(isinstance(v, sympy.Basic) for v in flat):
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return Known(out.reshape(arr.shape), dtype)
    from llmc.dtypes import to_numpy
    return Known(np.array(flat, dtype=to_numpy(dtype)).reshape(arr.shape), dtype)


def _norm(v):
    if isinstance(v, sympy.Basic):
        if v.is_Integer:
            return int(v)
        if v.is_Boolean or v in (sympy.true, sympy.false):
            return bool(v)
        return D.dim(v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _elementwise(fn: Callable, a: Known, b: Known, dtype: str) -> Known:
    x, y = np.broadcast_arrays(a.value, b.value)
    out = [fn(p, q) for p, q in zip(x.reshape(-1).tolist(), y.reshape(-1).tolist())]
    return make(np.array(out, dtype=object).reshape(x.shape), dtype)


def _is_int(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


# --------------------------------------------------------------------------- arithmetic
def add(a: Known, b: Known) -> Known:
    if a.is_static and b.is_static:
        return Known(np.asarray(a.value + b.value).astype(a.value.dtype), a.dtype)
    return _elementwise(lambda p, q: p + q, a, b, a.dtype)


def sub(a: Known, b: Known) -> Known:
    if a.is_static and b.is_static:
        return Known(np.asarray(a.value - b.value).astype(a.value.dtype), a.dtype)
    return _elementwise(lambda p, q: p - q, a, b, a.dtype)


def mul(a: Known, b: Known) -> Known:
    if a.is_static and b.is_static:
        return Known(np.asarray(a.value * b.value).astype(a.value.dtype), a.dtype)
    return _elementwise(lambda p, q: p * q, a, b, a.dtype)


def div(a: Known, b: Known) -> Known:
    if a.is_static and b.is_static:
        if _is_int(a.dtype):
            if np.any(b.value == 0):
                raise CannotEval("integer division by zero")
            q = np.trunc(a.value.astype(np.float64) / b.value.astype(np.float64))
            return Known(q.astype(a.value.dtype), a.dtype)
        return Known(np.asarray(a.value / b.value).astype(a.value.dtype), a.dtype)

    def one(p, q):
        if isinstance(p, int) and isinstance(q, int):
            return int(np.trunc(p / q))
        return D.floordiv(p, q)
    return _elementwise(one, a, b, a.dtype)


def _minmax(fn, symfn):
    def op(a: Known, b: Known) -> Known:
        if a.is_static and b.is_static:
            return Known(np.asarray(fn(a.value, b.value)).astype(a.value.dtype), a.dtype)
        return _elementwise(lambda p, q: D.dim(symfn(p, q)), a, b, a.dtype)
    return op


maximum = _minmax(np.maximum, sympy.Max)
minimum = _minmax(np.minimum, sympy.Min)


def _decide(rel) -> bool:
    """A sympy relation's truth value, or CannotEval when it depends on symbol values."""
    if isinstance(rel, (bool, np.bool_)):
        return bool(rel)
    if rel in (sympy.true, sympy.false):
        return bool(rel)
    raise CannotEval(f"cannot decide {rel} at import")


def equal(a: Known, b: Known) -> Known:
    if a.is_static and b.is_static:
        return Known(np.asarray(a.value == b.value), "bool")

    def one(p, q):
        diff = sympy.simplify(sympy.sympify(p) - sympy.sympify(q))
        if diff.is_zero is None:
            raise CannotEval(f"cannot decide {p} == {q} at import")
        return bool(diff.is_zero)
    return _elementwise(one, a, b, "bool")


def compare(kind: str) -> Callable[[Known, Known], Known]:
    """Less/Greater/... on known values (symbolic only when sympy can decide)."""
    ops = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}
    sym = {"lt": sympy.Lt, "le": sympy.Le, "gt": sympy.Gt, "ge": sympy.Ge}

    def op(a: Known, b: Known) -> Known:
        if a.is_static and b.is_static:
            return Known(np.asarray(ops[kind](a.value, b.value)), "bool")
        return _elementwise(lambda p, q: _decide(sym[kind](p, q)), a, b, "bool")
    return op


def where(c: Known, x: Known, y: Known) -> Known:
    if not c.is_static:
        raise CannotEval("symbolic condition")
    if x.is_static and y.is_static:
        return Known(np.where(c.value, x.value, y.value).astype(x.value.dtype), x.dtype)
    xv, yv = x.value.astype(object), y.value.astype(object)
    return make(np.where(c.value, xv, yv), x.dtype)


def cast(a: Known, dtype: str) -> Known:
    from llmc.dtypes import to_numpy
    if a.is_static:
        if dtype == "bool":
            return Known(a.value != 0, dtype)
        if _is_int(dtype) and a.value.dtype.kind == "f":
            return Known(np.trunc(a.value).astype(to_numpy(dtype)), dtype)
        return Known(a.value.astype(to_numpy(dtype)), dtype)
    if _is_int(dtype):
        return Known(a.value.copy(), dtype)
    raise CannotEval(f"symbolic value cast to {dtype}")


# --------------------------------------------------------------------------- movement
def gather(data: Known, idx: Known, axis: int) -> Known:
    if not idx.is_static:
        raise CannotEval("symbolic gather indices")
    axis = axis % max(data.value.ndim, 1)
    n = data.value.shape[axis]
    if np.any(idx.value >= n) or np.any(idx.value < -n):
        raise CannotEval("gather index out of range")
    out = np.take(data.value, idx.value.astype(np.int64), axis=axis)
    return Known(np.asarray(out, dtype=data.value.dtype), data.dtype)


def concat(parts: Sequence[Known], axis: int) -> Known:
    arrays = [p.value for p in parts]
    if any(a.dtype == object for a in arrays):
        arrays = [a.astype(object) for a in arrays]
    return Known(np.concatenate(arrays, axis=axis), parts[0].dtype)


def reshape(a: Known, shape: Sequence[int]) -> Known:
    return Known(a.value.reshape(tuple(shape)), a.dtype)


def slice_(a: Known, starts, ends, axes, steps) -> Known:
    index = [slice(None)] * a.value.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if not all(isinstance(v, int) for v in (s, e, st)):
            raise CannotEval("symbolic slice bounds on a known value")
        index[ax] = slice(s, e, st)
    return Known(a.value[tuple(index)], a.dtype)


def reduce_prod(a: Known, axes: Sequence[int] | None, keepdims: bool) -> Known:
    ax = tuple(axes) if axes else None
    if a.is_static:
        return Known(np.asarray(np.prod(a.value, axis=ax, keepdims=keepdims)).astype(a.value.dtype),
                     a.dtype)
    out = np.prod(a.value, axis=ax, keepdims=keepdims)
    return make(np.asarray(out, dtype=object), a.dtype)


def reduce_sum(a: Known, axes: Sequence[int] | None, keepdims: bool) -> Known:
    ax = tuple(axes) if axes else None
    if a.is_static:
        return Known(np.asarray(np.sum(a.value, axis=ax, keepdims=keepdims)).astype(a.value.dtype),
                     a.dtype)
    return make(np.asarray(np.sum(a.value, axis=ax, keepdims=keepdims), dtype=object), a.dtype)


def neg(a: Known) -> Known:
    if a.is_static:
        return Known(-a.value, a.dtype)
    return make(-a.value, a.dtype)


def mod(a: Known, b: Known, fmod: bool) -> Known:
    """Integer Mod (fmod: sign of the dividend as C; else of the divisor as Python)."""
    if a.is_static and b.is_static:
        if np.any(b.value == 0):
            raise CannotEval("modulo by zero")
        fn = np.fmod if fmod else np.mod
        return Known(np.asarray(fn(a.value, b.value)).astype(a.value.dtype), a.dtype)

    def one(p, q):
        if isinstance(p, int) and isinstance(q, int):
            return int(np.fmod(p, q)) if fmod else p % q
        if isinstance(q, int) and q > 0:  # dims are positive: both conventions agree
            return D.dim(sympy.Mod(p, q))
        raise CannotEval(f"cannot decide {p} mod {q} at import")
    return _elementwise(one, a, b, a.dtype)
