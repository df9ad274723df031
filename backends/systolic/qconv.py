"""2-D convolution on the array via im2col, and its int8 op ``systolic_qconv2d``.

Why im2col: the array runs GEMMs; a conv with C input channels and a KH x KW kernel is the GEMM
[N*OH*OW, C*KH*KW] x [C*KH*KW, O] over the input's patches. The patches of the *quantized*
input are gathered (zero padding is exact: 0 quantizes to 0), so the array sees int8 operands
only. The op ``systolic_qconv2d`` (registered here, used only by this backend) carries the int8
weights and scales; its numpy reference is the int8 reference of the array call, which must
match it bit for bit.

``systolic_qconv2d``(x, wq, w_scale, [bias]) {kernel, strides, pads, dilations, x_scale}:
x float32 [N, C, H, W]; wq int8 [C*KH*KW, O] (row = c*KH*KW + kh*KW + kw); w_scale float32 [O];
bias float32 [O]; y float32 [N, O, OH, OW] = dequant(im2col(quant(x)) @ wq) + bias.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from llmc.errors import ShapeError
from llmc.ir import TensorType
from llmc.ops import register_op
from llmc.ops import nn as _nn
from llmc.ops.quant import QMAX8

OP = "systolic_qconv2d"


def _conv_attrs(attrs: Mapping[str, Any]) -> dict:
    return {k: attrs[k] for k in ("strides", "pads", "dilations") if k in attrs}


def _infer(in_types: Sequence[TensorType | None], attrs: Mapping[str, Any]) -> list:
    if len(in_types) not in (3, 4) or any(t is None for t in in_types[:3]):
        raise ShapeError(f"{OP} takes (x, wq, w_scale, [bias])")
    x, wq, ws = in_types[:3]
    kh, kw = (int(k) for k in attrs["kernel"])
    if x.rank != 4 or x.dtype != "float32":
        raise ShapeError(f"{OP}: x must be float32 [N, C, H, W], got {x}")
    if wq.dtype != "int8" or wq.rank != 2 or not isinstance(x.shape[1], int) or \
            wq.shape[0] != x.shape[1] * kh * kw:
        raise ShapeError(f"{OP}: wq must be int8 [C*KH*KW, O], got {wq}")
    o = wq.shape[1]
    fake_w = TensorType("float32", (o, x.shape[1], kh, kw))
    out = _nn._conv_infer([x, fake_w], _conv_attrs(attrs))
    return out


def im2col(xq: np.ndarray, kernel: Sequence[int], attrs: Mapping[str, Any]
           ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """int8 [N, C, H, W] -> (patches int8 [N*OH*OW, C*KH*KW], (N, OH, OW))."""
    strides, dil, pads = _nn._spatial_attrs(dict(_conv_attrs(attrs), kernel=list(kernel)), 2)
    n, c, h, w = xq.shape
    out_sp = [_nn._pool_len(xq.shape[2 + i], pads[i], pads[i + 2], kernel[i], strides[i], dil[i])
              for i in range(2)]
    xp = np.pad(xq, [(0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])])
    v = _nn._windows(xp, list(kernel), strides, dil, out_sp)      # N, C, OH, OW, KH, KW
    p = np.ascontiguousarray(v.transpose(0, 2, 3, 1, 4, 5))
    return p.reshape(n * out_sp[0] * out_sp[1], c * kernel[0] * kernel[1]), \
        (n, out_sp[0], out_sp[1])


def qconv_forward(x: np.ndarray, wq: np.ndarray, w_scale: np.ndarray, x_scale: float,
                  bias: np.ndarray | None, attrs: Mapping[str, Any],
                  gemm: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """quantize -> im2col -> ``gemm`` (int8 -> int32) -> dequantize (+bias) -> NCHW."""
    q = np.round(x.astype(np.float32) / np.float32(x_scale))
    xq = np.clip(q, -QMAX8, QMAX8).astype(np.int8)
    patches, (n, oh, ow) = im2col(xq, [int(k) for k in attrs["kernel"]], attrs)
    acc = gemm(patches, wq)
    y = acc.astype(np.float32) * (np.float32(x_scale) * w_scale.astype(np.float32))
    if bias is not None:
        y = y + bias.astype(np.float32)
    return np.ascontiguousarray(y.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)).astype(np.float32)


def _reference(ins: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list:
    x, wq, ws = ins[:3]
    bias = ins[3] if len(ins) > 3 else None
    exact = lambda a, b: (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)  # noqa
    return [qconv_forward(x, wq, ws, float(attrs["x_scale"]), bias, attrs, exact)]


register_op(OP, _infer, _reference,
            doc="int8 2-D conv (im2col GEMM) of the systolic backend; x quantized per tensor")
