"""Elementwise ops: unary math/activations, broadcasting binary ops, where, cast, clip.

References compute in the input dtype (float16/bfloat16 go through float32 because numpy's
half-precision math is slow or missing) and return exactly the dtype ``infer`` promised.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import dims as D
from .. import dtypes as T
from ..errors import ShapeError
from ..ir import TensorType
from . import register_op

_HALF = ("float16", "bfloat16")


def _wide(x: np.ndarray) -> np.ndarray:
    """float16/bfloat16 -> float32 for computing; everything else unchanged."""
    if x.dtype.name in _HALF or x.dtype == T.to_numpy("bfloat16"):
        return x.astype(np.float32)
    return x


def _check_kind(ty: TensorType, kind: str, what: str = "input") -> None:
    """Raise ShapeError unless ``ty.dtype`` is of ``kind`` (float, int, bool, num, signed, any)."""
    dt = ty.dtype
    ok = {
        "any": True,
        "float": T.is_float(dt),
        "int": T.is_int(dt),
        "bool": dt == "bool",
        "num": dt != "bool",
        "signed": T.is_float(dt) or (T.is_int(dt) and not dt.startswith("uint")),
        "intbool": T.is_int(dt) or dt == "bool",
    }[kind]
    if not ok:
        names = {"float": "a float", "int": "an integer", "bool": "a bool", "num": "a numeric",
                 "signed": "a signed numeric", "intbool": "an integer or bool"}
        raise ShapeError(f"{what} must have {names[kind]} dtype, got {dt}")


def _same_infer(kind: str):
    def infer(in_types, attrs):
        if len(in_types) != 1 or in_types[0] is None:
            raise ShapeError(f"expects 1 input, got {len(in_types)}")
        _check_kind(in_types[0], kind)
        return [in_types[0]]
    return infer


def unary(name: str, fn: Callable, doc: str = "", kind: str = "float",
          with_attrs: bool = False) -> None:
    """Register a one-input op whose output has the input's type.

    ``fn(x)`` (or ``fn(x, attrs)`` with ``with_attrs``) gets the input widened to float32 for
    half types; the result is cast back to the input dtype.
    """
    def ref(inputs, attrs):
        x = inputs[0]
        with np.errstate(all="ignore"):
            y = fn(_wide(x), attrs) if with_attrs else fn(_wide(x))
        return [np.asarray(y).astype(x.dtype, copy=False)]
    register_op(name, _same_infer(kind), ref, doc)


def _broadcast_same_dtype(in_types, attrs):
    a, b = in_types
    if a is None or b is None:
        raise ShapeError("expects 2 inputs")
    if a.dtype != b.dtype:
        raise ShapeError(f"operand dtypes differ ({a.dtype} vs {b.dtype}); insert a cast")
    return [TensorType(a.dtype, D.broadcast(a.shape, b.shape))]


def binary(name: str, fn: Callable, doc: str = "", kind: str = "num",
           out_dtype: str | None = None, with_attrs: bool = False) -> None:
    """Register a broadcasting two-input op (equal input dtypes).

    The output has the inputs' dtype, or ``out_dtype`` (comparisons give bool).
    """
    def infer(in_types, attrs):
        (out,) = _broadcast_same_dtype(in_types, attrs)
        _check_kind(in_types[0], kind, "operands")
        return [TensorType(out_dtype or out.dtype, out.shape)]

    def ref(inputs, attrs):
        a, b = inputs
        with np.errstate(all="ignore"):
            y = fn(_wide(a), _wide(b), attrs) if with_attrs else fn(_wide(a), _wide(b))
        return [np.asarray(y).astype(out_dtype or a.dtype, copy=False)]
    register_op(name, infer, ref, doc)


# --------------------------------------------------------------------------- math helpers
_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    """Exact (double-precision) erf, vectorized; numpy has none and scipy is not a dependency."""
    x = np.asarray(x)
    return np.asarray(_erf_scalar(x.astype(np.float64)), np.float64).astype(x.dtype)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.logaddexp(np.zeros((), x.dtype), x)


def _c(v, x):
    """A Python number as a 0-d array of x's dtype (keeps float32 math in float32)."""
    return np.asarray(v, dtype=x.dtype)


def _gelu(x, attrs):
    approx = attrs.get("approximate", "none")
    if approx == "tanh":
        inner = _c(math.sqrt(2.0 / math.pi), x) * (x + _c(0.044715, x) * x * x * x)
        return _c(0.5, x) * x * (_c(1.0, x) + np.tanh(inner))
    if approx != "none":
        raise ShapeError(f"gelu approximate must be 'none' or 'tanh', got {approx!r}")
    return _c(0.5, x) * x * (_c(1.0, x) + erf(x * _c(1.0 / math.sqrt(2.0), x)))


def _elu_neg(x, alpha):
    return _c(alpha, x) * (np.exp(x) - _c(1.0, x))


# --------------------------------------------------------------------------- unary ops
unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), kind="signed")
unary("neg", np.negative, kind="signed")
unary("abs", np.abs, kind="num")
unary("sign", np.sign, kind="num")
unary("exp", np.exp)
unary("log", np.log)
unary("sqrt", np.sqrt)
unary("rsqrt", lambda x: _c(1.0, x) / np.sqrt(x))
unary("reciprocal", lambda x: _c(1.0, x) / x)
unary("tanh", np.tanh)
unary("sigmoid", _sigmoid)
unary("erf", erf)
for _n, _f in [("sin", np.sin), ("cos", np.cos), ("tan", np.tan), ("asin", np.arcsin),
               ("acos", np.arccos), ("atan", np.arctan), ("sinh", np.sinh), ("cosh", np.cosh),
               ("asinh", np.arcsinh), ("acosh", np.arccosh), ("atanh", np.arctanh),
               ("floor", np.floor), ("ceil", np.ceil), ("round", np.round)]:
    unary(_n, _f)
unary("softplus", _softplus)
unary("softsign", lambda x: x / (_c(1.0, x) + np.abs(x)))
unary("silu", lambda x: x * _sigmoid(x))
unary("mish", lambda x: x * np.tanh(_softplus(x)))
unary("hard_swish", lambda x: x * np.clip(x * _c(1.0 / 6.0, x) + _c(0.5, x), 0, 1))
unary("bitwise_not", np.invert, kind="int")
unary("logical_not", np.logical_not, kind="bool")
unary("gelu", _gelu, with_attrs=True)
unary("leaky_relu", lambda x, a: np.where(x >= 0, x, _c(a.get("alpha", 0.01), x) * x),
      with_attrs=True)
unary("elu", lambda x, a: np.where(x > 0, x, _elu_neg(x, a.get("alpha", 1.0))), with_attrs=True)
unary("selu", lambda x, a: _c(a.get("gamma", 1.0507009873554804934193349852946), x) * np.where(
    x > 0, x, _elu_neg(x, a.get("alpha", 1.6732632423543772848170429916717))), with_attrs=True)
unary("celu", lambda x, a: np.maximum(x, 0) + np.minimum(
    0, _c(a.get("alpha", 1.0), x) * (np.exp(x / _c(a.get("alpha", 1.0), x)) - 1)),
    with_attrs=True)
unary("thresholded_relu", lambda x, a: np.where(x > _c(a.get("alpha", 1.0), x), x, 0),
      with_attrs=True)
unary("hard_sigmoid", lambda x, a: np.clip(
    _c(a.get("alpha", 0.2), x) * x + _c(a.get("beta", 0.5), x), 0, 1), with_attrs=True)
unary("shrink", lambda x, a: np.where(
    x < -_c(a.get("lambd", 0.5), x), x + _c(a.get("bias", 0.0), x),
    np.where(x > _c(a.get("lambd", 0.5), x), x - _c(a.get("bias", 0.0), x), 0)),
    kind="num", with_attrs=True)


def _bool_of_float(in_types, attrs):
    if len(in_types) != 1 or in_types[0] is None:
        raise ShapeError(f"expects 1 input, got {len(in_types)}")
    _check_kind(in_types[0], "float")
    return [TensorType("bool", in_types[0].shape)]


def _isinf(x, attrs):
    pos, neg = attrs.get("detect_positive", 1), attrs.get("detect_negative", 1)
    return (np.isposinf(x) & bool(pos)) | (np.isneginf(x) & bool(neg))


register_op("isnan", _bool_of_float, lambda i, a: [np.isnan(_wide(i[0]))])
register_op("isinf", _bool_of_float, lambda i, a: [_isinf(_wide(i[0]), a)])


# --------------------------------------------------------------------------- clip and cast
def _clip_infer(in_types, attrs):
    (x,) = _same_infer("num")(in_types, attrs)
    for k in ("min", "max"):
        v = attrs.get(k)
        if v is not None and not isinstance(v, (int, float)):
            raise ShapeError(f"clip {k} must be a number or None, got {v!r}")
    return [x]


def _clip_ref(inputs, attrs):
    x = inputs[0]
    lo, hi = attrs.get("min"), attrs.get("max")
    y = x
    if lo is not None:
        y = np.where(y < _c(lo, x), _c(lo, x), y)
    if hi is not None:
        y = np.where(y > _c(hi, x), _c(hi, x), y)
    return [np.asarray(y, dtype=x.dtype)]


register_op("clip", _clip_infer, _clip_ref)


def _cast_infer(in_types, attrs):
    if len(in_types) != 1 or in_types[0] is None:
        raise ShapeError("expects 1 input")
    to = attrs.get("to")
    if to not in T.DTYPES:
        raise ShapeError(f"cast 'to' must be one of {', '.join(T.DTYPES)}, got {to!r}")
    return [TensorType(to, in_types[0].shape)]


def _cast_ref(inputs, attrs):
    x, to = inputs[0], attrs["to"]
    if to == "bool":
        return [np.asarray(x != 0)]
    dst = T.to_numpy(to)
    if T.is_int(to) and (x.dtype.kind == "f" or x.dtype == T.to_numpy("bfloat16")):
        with np.errstate(all="ignore"):
            return [np.trunc(x.astype(np.float64)).astype(dst)]
    if to == "bfloat16" and x.dtype.kind in "iub":
        return [x.astype(np.float32).astype(dst)]
    return [x.astype(dst)]


register_op("cast", _cast_infer, _cast_ref)


# --------------------------------------------------------------------------- binary ops
def _int_div(a, b):
    """C-style integer division (truncates toward zero); x/0 gives 0 instead of crashing."""
    safe = np.where(b == 0, np.ones((), b.dtype), b)
    q = np.floor_divide(a, safe)
    r = a - q * safe
    fix = (r != 0) & ((a < 0) != (safe < 0))
    return np.where(b == 0, 0, q + fix.astype(q.dtype))


def _div(a, b):
    if a.dtype.kind in "iu":
        return _int_div(a, b)
    return np.divide(a, b)


binary("add", np.add)
binary("sub", np.subtract)
binary("mul", np.multiply)
binary("div", _div)
binary("maximum", np.maximum)
binary("minimum", np.minimum)


def _mod(a, b, attrs):
    with np.errstate(all="ignore"):
        if attrs.get("fmod", 0):
            return np.fmod(a, b)
        if a.dtype.kind == "f":
            return np.mod(a, b)
        return np.mod(a, np.where(b == 0, np.ones((), b.dtype), b)) * (b != 0)


def _mod_infer(in_types, attrs):
    (out,) = _broadcast_same_dtype(in_types, attrs)
    _check_kind(in_types[0], "num", "operands")
    if attrs.get("fmod", 0) not in (0, 1):
        raise ShapeError(f"mod fmod must be 0 or 1, got {attrs.get('fmod')!r}")
    return [out]


register_op("mod", _mod_infer, lambda i, a: [
    np.asarray(_mod(_wide(i[0]), _wide(i[1]), a)).astype(i[0].dtype)])
for _n, _f in [("equal", np.equal), ("less", np.less), ("less_equal", np.less_equal),
               ("greater", np.greater), ("greater_equal", np.greater_equal)]:
    binary(_n, _f, kind="any", out_dtype="bool")
for _n, _f in [("logical_and", np.logical_and), ("logical_or", np.logical_or),
               ("logical_xor", np.logical_xor)]:
    binary(_n, _f, kind="bool")
for _n, _f in [("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
               ("bitwise_xor", np.bitwise_xor)]:
    binary(_n, _f, kind="intbool")


def _bit_shift(a, b, attrs):
    direction = attrs.get("direction")
    if direction == "left":
        return np.left_shift(a, b)
    if direction == "right":
        return np.right_shift(a, b)
    raise ShapeError(f"bit_shift direction must be 'left' or 'right', got {direction!r}")


binary("bit_shift", _bit_shift, kind="int", with_attrs=True)


def _pow_infer(in_types, attrs):
    a, b = in_types
    if a is None or b is None:
        raise ShapeError("expects 2 inputs")
    _check_kind(a, "num", "base")
    _check_kind(b, "num", "exponent")
    return [TensorType(a.dtype, D.broadcast(a.shape, b.shape))]


def _pow_ref(inputs, attrs):
    a, b = inputs
    with np.errstate(all="ignore"):
        if a.dtype.kind in "iu":
            if b.dtype.kind in "iu" and not (b < 0).any():
                y = np.power(a, b.astype(a.dtype))
            else:
                y = np.trunc(np.power(a.astype(np.float64), b.astype(np.float64)))
        else:
            y = np.power(_wide(a), _wide(b).astype(_wide(a).dtype))
    return [np.asarray(y).astype(a.dtype)]


register_op("pow", _pow_infer, _pow_ref)


def _prelu_infer(in_types, attrs):
    x, s = in_types
    if x is None or s is None:
        raise ShapeError("expects 2 inputs (x, slope)")
    if x.dtype != s.dtype:
        raise ShapeError(f"x and slope dtypes differ ({x.dtype} vs {s.dtype})")
    _check_kind(x, "signed")
    out = D.broadcast(x.shape, s.shape)
    if len(out) != x.rank:
        raise ShapeError(f"slope {D.shape_str(s.shape)} has more dims than x "
                         f"{D.shape_str(x.shape)}")
    return [TensorType(x.dtype, out)]


register_op("prelu", _prelu_infer, lambda i, a: [
    np.where(i[0] < 0, _wide(i[0]) * _wide(i[1]), _wide(i[0])).astype(i[0].dtype)])


def _where_infer(in_types, attrs):
    if len(in_types) != 3 or any(t is None for t in in_types):
        raise ShapeError("expects 3 inputs (cond, x, y)")
    c, x, y = in_types
    if c.dtype != "bool":
        raise ShapeError(f"condition must be bool, got {c.dtype}; insert a cast")
    if x.dtype != y.dtype:
        raise ShapeError(f"x and y dtypes differ ({x.dtype} vs {y.dtype})")
    return [TensorType(x.dtype, D.broadcast(D.broadcast(c.shape, x.shape), y.shape))]


register_op("where", _where_infer, lambda i, a: [np.where(i[0], i[1], i[2]).astype(i[1].dtype)])
