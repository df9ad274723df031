"""Blocked channel layout ops: ``layout_transform``, ``conv2d_nchwc``, ``pool2d_nchwc``.

Why: an x86 convolution vectorizes best over output channels, and that needs channels
innermost in memory. The layout pass (:mod:`llmc.passes.layout`) rewrites 2-D convolutions
(and the pools and elementwise ops between them) to NCHW{b}c: ``[N, C/b, H, W, b]``, where
``b`` (16 for fp32 AVX-512) channels sit next to each other. Weights are pre-packed once at
compile time as OIHW{i}i{o}o: ``[O/bo, I/bi, KH, KW, bi, bo]``. Explicit ``layout_transform``
nodes convert at the boundaries with ordinary NCHW ops.

Layout names: ``"NCHW"`` and ``"NCHW<b>c"`` (``"NCHW16c"``). The references convert to
NCHW, run the plain op's reference and convert back, so they are exact by construction.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from .. import dims as D
from ..errors import ShapeError
from ..ir import TensorType
from . import get_op, register_op
from .shape_ops import n_inputs

_BLOCKED = re.compile(r"^NCHW(\d+)c$")


def block_of(layout: str) -> int:
    """The channel block of a layout name: 0 for "NCHW", b for "NCHW<b>c"."""
    if layout == "NCHW":
        return 0
    m = _BLOCKED.match(str(layout))
    if not m or int(m.group(1)) < 1:
        raise ShapeError(f"unknown layout {layout!r} (expected 'NCHW' or 'NCHW<b>c')")
    return int(m.group(1))


def to_blocked(x: np.ndarray, b: int) -> np.ndarray:
    """NCHW -> NCHW{b}c (numpy; C must be a multiple of b)."""
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // b, b, h, w).transpose(0, 1, 3, 4, 2))


def to_plain(x: np.ndarray) -> np.ndarray:
    """NCHW{b}c -> NCHW (numpy)."""
    n, co, h, w, b = x.shape
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(n, co * b, h, w))


def pack_conv_weight(w: np.ndarray, bi: int, bo: int) -> np.ndarray:
    """OIHW -> OIHW{bi}i{bo}o ([O/bo, I/bi, KH, KW, bi, bo]); done once at compile time."""
    o, i, kh, kw = w.shape
    return np.ascontiguousarray(
        w.reshape(o // bo, bo, i // bi, bi, kh, kw).transpose(0, 2, 4, 5, 3, 1))


def unpack_conv_weight(wp: np.ndarray) -> np.ndarray:
    """OIHW{bi}i{bo}o -> OIHW (for the reference)."""
    oo, io, kh, kw, bi, bo = wp.shape
    return np.ascontiguousarray(wp.transpose(0, 5, 1, 4, 2, 3).reshape(oo * bo, io * bi, kh, kw))


# --------------------------------------------------------------------------- layout_transform
def _lt_infer(in_types, attrs: Mapping[str, Any]):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    src, dst = block_of(attrs.get("src", "")), block_of(attrs.get("dst", ""))
    if (src == 0) == (dst == 0):
        raise ShapeError(f"layout_transform converts between NCHW and NCHW<b>c, got "
                         f"{attrs.get('src')!r} -> {attrs.get('dst')!r}")
    if src == 0:
        if x.rank != 4:
            raise ShapeError(f"NCHW input must have rank 4, got {D.shape_str(x.shape)}")
        c = x.shape[1]
        if not isinstance(c, int) or c % dst:
            raise ShapeError(f"channels {c} must be a static multiple of the block {dst}")
        n, _, h, w = x.shape
        return [TensorType(x.dtype, (n, c // dst, h, w, dst))]
    if x.rank != 5 or x.shape[4] != src:
        raise ShapeError(f"NCHW{src}c input must be [N, C/{src}, H, W, {src}], got "
                         f"{D.shape_str(x.shape)}")
    n, co, h, w, _ = x.shape
    return [TensorType(x.dtype, (n, D.product([co, src]), h, w))]


def _lt_ref(inputs, attrs):
    x = inputs[0]
    dst = block_of(attrs["dst"])
    return [to_blocked(x, dst) if dst else to_plain(x)]


register_op("layout_transform", _lt_infer, _lt_ref,
            "NCHW <-> NCHW<b>c; attrs: src, dst (layout names).")


# --------------------------------------------------------------------------- conv2d_nchwc
def _plain_type(t: TensorType) -> TensorType:
    n, co, h, w, b = t.shape
    return TensorType(t.dtype, (n, D.product([co, b]), h, w))


def _conv_nchwc_infer(in_types, attrs):
    if len(in_types) not in (2, 3) or in_types[0] is None or in_types[1] is None:
        raise ShapeError("expects inputs (x, w, [b])")
    x, w = in_types[:2]
    b = in_types[2] if len(in_types) == 3 else None
    if x.rank != 5 or w.rank != 6:
        raise ShapeError(f"x must be [N, C/bi, H, W, bi] and w [O/bo, C/bi, KH, KW, bi, bo], "
                         f"got {D.shape_str(x.shape)} and {D.shape_str(w.shape)}")
    if not D.is_static_shape(w.shape):
        raise ShapeError("conv2d_nchwc weight must be static")
    oo, io, kh, kw, bi, bo = (int(d) for d in w.shape)
    if not D.equal(x.shape[1], io) or x.shape[4] != bi:
        raise ShapeError(f"x {D.shape_str(x.shape)} does not match w {D.shape_str(w.shape)}")
    if b is not None and (b.rank != 1 or b.shape[0] != oo * bo):
        raise ShapeError(f"bias must be [{oo * bo}], got {D.shape_str(b.shape)}")
    if int(attrs.get("group", 1)) != 1:
        raise ShapeError("conv2d_nchwc supports group 1 only")
    plain_w = TensorType(w.dtype, (oo * bo, io * bi, kh, kw))
    plain_b = TensorType(b.dtype, b.shape) if b is not None else None
    (y,) = get_op("conv").infer([_plain_type(x), plain_w] + ([plain_b] if b else []), attrs)
    n, _, oh, ow = y.shape
    return [TensorType(x.dtype, (n, oo, oh, ow, bo))]


def _conv_nchwc_ref(inputs, attrs):
    x, wp = inputs[0], inputs[1]
    bo = wp.shape[5]
    ins = [to_plain(x), unpack_conv_weight(wp)] + list(inputs[2:3])
    (y,) = get_op("conv").reference(ins, attrs)
    return [to_blocked(y, bo)]


register_op("conv2d_nchwc", _conv_nchwc_infer, _conv_nchwc_ref,
            "2-D conv in NCHW<bi>c with weight OIHW<bi>i<bo>o; attrs: strides, pads, "
            "dilations (group 1).")


# --------------------------------------------------------------------------- pool2d_nchwc
_POOLS = {"max": "max_pool", "avg": "avg_pool"}


def _pool_op(attrs) -> tuple[str, dict]:
    kind = attrs.get("kind")
    if kind not in _POOLS:
        raise ShapeError(f"pool2d_nchwc: kind must be 'max' or 'avg', got {kind!r}")
    return _POOLS[kind], {k: v for k, v in attrs.items() if k != "kind"}


def _pool_nchwc_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    if x.rank != 5:
        raise ShapeError(f"x must be [N, C/b, H, W, b], got {D.shape_str(x.shape)}")
    op, plain_attrs = _pool_op(attrs)
    (y,) = get_op(op).infer([_plain_type(x)], plain_attrs)
    n, _, oh, ow = y.shape
    return [TensorType(x.dtype, (n, x.shape[1], oh, ow, x.shape[4]))]


def _pool_nchwc_ref(inputs, attrs):
    x = inputs[0]
    op, plain_attrs = _pool_op(attrs)
    (y,) = get_op(op).reference([to_plain(x)], plain_attrs)
    return [to_blocked(y, x.shape[4])]


register_op("pool2d_nchwc", _pool_nchwc_infer, _pool_nchwc_ref,
            "max/avg pool over H, W of NCHW<b>c; attrs: kind and the plain pool's attrs.")
