"""Elementwise ops: unary math/activations, broadcasting binary ops, where, cast, clip."""
from __future__ import annotations

import numpy as np

from .. import dims as D
from ..errors import ShapeError
from ..ir import TensorType
from . import register_op


def _same(in_types, attrs):
    return [in_types[0]]


def unary(name: str, fn, doc: str = "") -> None:
    """Register a one-input op whose output has the input's type."""
    def ref(inputs, attrs):
        x = inputs[0]
        return [np.asarray(fn(x, attrs) if fn.__code__.co_argcount == 2 else fn(x)).astype(x.dtype)]
    register_op(name, _same, ref, doc)


def _broadcast_same_dtype(in_types, attrs):
    a, b = in_types
    if a.dtype != b.dtype:
        raise ShapeError(f"operand dtypes differ ({a.dtype} vs {b.dtype})")
    return [TensorType(a.dtype, D.broadcast(a.shape, b.shape))]


def binary(name: str, fn, doc: str = "") -> None:
    """Register a broadcasting two-input op whose output has the inputs' dtype."""
    def ref(inputs, attrs):
        a, b = inputs
        return [np.asarray(fn(a, b)).astype(a.dtype)]
    register_op(name, _broadcast_same_dtype, ref, doc)


unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)))
unary("exp", np.exp)
binary("add", np.add)
binary("mul", np.multiply)
# The rest of the family follows docs/ops.md.
