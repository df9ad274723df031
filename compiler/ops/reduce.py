"""Reductions (reduce_*), argmax/argmin and cumsum."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from . import register_op
from .shape_ops import check_axes, check_axis, n_inputs

_HALF = ("float16", "bfloat16")


def _axes(attrs, rank: int) -> tuple[int, ...]:
    axes = check_axes(list(attrs.get("axes", [])), rank)
    return tuple(sorted(axes)) if axes else tuple(range(rank))


def _reduce_infer(in_types, attrs, allow_bool: bool = False):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    if x.dtype == "bool" and not allow_bool:
        raise ShapeError("this reduction needs a numeric dtype, got bool")
    axes = _axes(attrs, x.rank)
    keep = bool(attrs.get("keepdims", True))
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    return [TensorType(x.dtype, shape)]


def _log_sum_exp(x, axes, keep):
    if x.size == 0:
        return np.log(np.sum(np.exp(x), axis=axes, keepdims=keep))
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    y = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return y if keep else np.squeeze(y, axis=axes)


def _lowest(dt: np.dtype):
    """Identity of max (an empty max is -inf for floats, the lowest value for ints)."""
    return False if dt == np.bool_ else -np.inf if dt.kind == "f" else np.iinfo(dt).min


def _highest(dt: np.dtype):
    return True if dt == np.bool_ else np.inf if dt.kind == "f" else np.iinfo(dt).max


_FUNCS: dict[str, Callable] = {
    "reduce_sum": lambda x, ax, k: np.sum(x, axis=ax, keepdims=k),
    "reduce_mean": lambda x, ax, k: np.mean(x, axis=ax, keepdims=k),
    "reduce_max": lambda x, ax, k: np.max(x, axis=ax, keepdims=k, initial=_lowest(x.dtype)),
    "reduce_min": lambda x, ax, k: np.min(x, axis=ax, keepdims=k, initial=_highest(x.dtype)),
    "reduce_prod": lambda x, ax, k: np.prod(x, axis=ax, keepdims=k),
    "reduce_l1": lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k),
    "reduce_l2": lambda x, ax, k: np.sqrt(np.sum(np.square(x), axis=ax, keepdims=k)),
    "reduce_sum_square": lambda x, ax, k: np.sum(np.square(x), axis=ax, keepdims=k),
    "reduce_log_sum": lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k)),
    "reduce_log_sum_exp": _log_sum_exp,
}


def _make_reduce(fn: Callable):
    def ref(inputs, attrs):
        x = inputs[0]
        axes = _axes(attrs, x.ndim)
        keep = bool(attrs.get("keepdims", True))
        xw = x.astype(np.float32) if x.dtype.name in _HALF else x
        if x.dtype.kind in "iu" and fn is _FUNCS["reduce_mean"]:
            s = np.sum(x.astype(np.int64), axis=axes, keepdims=keep)
            n = int(np.prod([x.shape[a] for a in axes]))
            q = np.abs(s) // max(n, 1)
            return [(np.sign(s) * q).astype(x.dtype)]
        with np.errstate(all="ignore"):
            y = fn(xw, axes, keep)
        return [np.asarray(y).astype(x.dtype)]
    return ref


for _name, _fn in _FUNCS.items():
    register_op(_name, (lambda t, a: _reduce_infer(t, a, allow_bool=True))
                if _name in ("reduce_max", "reduce_min") else _reduce_infer, _make_reduce(_fn))


def _arg_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    axis = check_axis(attrs.get("axis", 0), x.rank)
    keep = bool(attrs.get("keepdims", True))
    shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape) if keep or i != axis)
    return [TensorType("int64", shape)]


def _make_arg(fn: Callable):
    def ref(inputs, attrs):
        x = inputs[0]
        x = x.astype(np.float32) if x.dtype.name in _HALF else x
        axis = attrs.get("axis", 0)
        keep = bool(attrs.get("keepdims", True))
        if attrs.get("select_last_index", False):
            y = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            y = fn(x, axis=axis)
        y = np.asarray(y, dtype=np.int64)
        return [np.expand_dims(y, axis) if keep else y]
    return ref


register_op("argmax", _arg_infer, _make_arg(np.argmax))
register_op("argmin", _arg_infer, _make_arg(np.argmin))


def _cumsum_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    check_axis(attrs.get("axis", 0), x.rank)
    if x.dtype == "bool":
        raise ShapeError("cumsum needs a numeric dtype, got bool")
    return [x]


def _cumsum_ref(inputs, attrs):
    x = inputs[0]
    axis = attrs.get("axis", 0)
    xw = x.astype(np.float32) if x.dtype.name in _HALF else x
    if attrs.get("reverse", False):
        xw = np.flip(xw, axis)
    y = np.cumsum(xw, axis=axis, dtype=xw.dtype)
    if attrs.get("exclusive", False):
        head = np.zeros_like(np.take(y, [0], axis=axis))
        y = np.concatenate([head, np.take(y, np.arange(y.shape[axis] - 1), axis=axis)], axis)
    if attrs.get("reverse", False):
        y = np.flip(y, axis)
    return [np.ascontiguousarray(y).astype(x.dtype)]


register_op("cumsum", _cumsum_infer, _cumsum_ref)
