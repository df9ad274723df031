"""``rope``: rotary position embedding in one op (transformers' rotate_half convention).

Why: as plain ops RoPE is slice, slice, neg, concat, mul, mul, add (six kernels after
fusion) for q and for k in every layer, about a tenth of an LLM decode step's kernel launches.
One op lowers to one elementwise kernel that reads x, cos and sin once.

    rope(x, cos, sin) = x * cos + rotate_half(x) * sin
    rotate_half(x)[..., i] = -x[..., i + E/2]  (i <  E/2)
                              x[..., i - E/2]  (i >= E/2)

``cos``/``sin`` broadcast numpy-style against ``x`` (in the LLM graphs x is
[batch, heads, seq, E] and cos/sin are [batch, 1, seq, E]). The last axis E of ``x`` must be
static and even.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .. import dims as D
from .. import dtypes as T
from ..errors import ShapeError
from ..ir import TensorType
from . import register_op
from .shape_ops import n_inputs

_HALF = ("float16", "bfloat16")


def _infer(in_types, attrs: Mapping[str, Any]):
    n_inputs(in_types, 3, "x, cos, sin")
    x, cos, sin = in_types
    if not T.is_float(x.dtype):
        raise ShapeError(f"x must have a float dtype, got {x.dtype}")
    if cos.dtype != x.dtype or sin.dtype != x.dtype:
        raise ShapeError(f"x, cos and sin must share a dtype, got {x.dtype}, {cos.dtype}, "
                         f"{sin.dtype}; insert a cast")
    if x.rank < 1:
        raise ShapeError("x must have rank >= 1 (the rotated axis is the last)")
    e = x.shape[-1]
    if not isinstance(e, int) or e % 2:
        raise ShapeError(f"the last axis of x (E = {e}) must be static and even, "
                         f"x is {D.shape_str(x.shape)}")
    out = D.broadcast(D.broadcast(x.shape, cos.shape, "rope x/cos"), sin.shape, "rope x/sin")
    return [TensorType(x.dtype, out)]


def rotate_half(x: np.ndarray) -> np.ndarray:
    """[-x2, x1] along the last axis, x1/x2 its first/second half (transformers' helper)."""
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def _reference(inputs, attrs: Mapping[str, Any]):
    x, cos, sin = inputs
    dt = x.dtype
    w = (lambda a: a.astype(np.float32)) if dt.name in _HALF or dt == T.to_numpy("bfloat16") \
        else (lambda a: a)
    xf = w(x)
    y = xf * w(cos) + rotate_half(xf) * w(sin)
    return [np.asarray(y).astype(dt, copy=False)]


register_op("rope", _infer, _reference,
            "Rotary embedding x * cos + rotate_half(x) * sin over the last axis (E even); "
            "cos/sin broadcast against x; no attributes.")
