"""int8 W8A8 2-D convolution: ``qconv2d_int8``, the conv counterpart of ``qlinear_int8``.

Why: a CNN under ``--precision int8`` should run its convolutions on integer dot products
too. The op is an im2col GEMM: each output pixel's receptive field (kh, kw, c order, zero
padding) is one row of the activation matrix, quantized per tensor; the weight is the
``qlinear_int8`` VNNI panel layout of W as [Cout, kh*kw*Cin] (channels innermost: a patch row
is kh*kw contiguous runs of an NHWC image), quantized per output channel. The x86 kernel
quantizes x once into a padded NHWC uint8 image, gathers the patch rows from it (no float
im2col buffer) and reuses the int8 GEMM and its rescale epilogue (backends/lowering_quant.py).

``qconv2d_int8``(x, w, w_scale, w_colsum, [bias]) {n, k, kernel, strides, pads, dilations,
x_scale}: x float32 [N, Cin, H, W]; w int8 [ceil(n/16), ceil(k/4), 16, 4] with n = Cout,
k = kh*kw*Cin and W[o, (u*kw + v)*Cin + c] = conv weight [o, c, u, v]; w_scale float32 [n];
w_colsum int32 [n]; bias float32 [n];
xq = clip(round_half_even(x / x_scale), -127, 127) (padding quantizes to 0);
y[b, o, i, j] = sum_{c,u,v} xq[b, c, i*s0 - p0 + u*d0, j*s1 - p1 + v*d1] * w[o, c, u, v]
* (x_scale * w_scale[o]) + bias[o] -> float32 [N, Cout, OH, OW]. Groups other than 1 are
not covered (they stay float32).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from . import register_op
from .nn import _pool_len, _spatial_attrs
from .quant import KB, NB, quantize_activation, unpack_int8


def conv_geometry(attrs: Mapping[str, Any]) -> tuple[list[int], list[int], list[int], list[int]]:
    """(kernel [kh, kw], strides, dilations, pads [top, left, bottom, right]) of the op."""
    kernel = [int(v) for v in attrs["kernel"]]
    strides, dil, pads = _spatial_attrs(attrs, 2, kernel)
    return kernel, [int(s) for s in strides], [int(d) for d in dil], [int(p) for p in pads]


def im2col(x: np.ndarray, attrs: Mapping[str, Any]) -> tuple[np.ndarray, tuple[int, int]]:
    """x [N, C, H, W] -> patch rows [N*OH*OW, kh*kw*C] (kh, kw, c order), and (OH, OW)."""
    (kh, kw), (s0, s1), (d0, d1), (p0, p1, p2, p3) = conv_geometry(attrs)
    n, c, h, w = x.shape
    oh = _pool_len(h, p0, p2, kh, s0, d0)
    ow = _pool_len(w, p1, p3, kw, s1, d1)
    xp = np.pad(x, [(0, 0), (0, 0), (p0, p2), (p1, p3)])
    cols = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for u in range(kh):
        for v in range(kw):
            cols[:, :, :, u, v, :] = xp[:, :, u * d0: u * d0 + s0 * (oh - 1) + 1: s0,
                                 v * d1: v * d1 + s1 * (ow - 1) + 1: s1].transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw), (oh, ow)


def _infer(in_types: Sequence[Optional[TensorType]], attrs: Mapping[str, Any]) -> list:
    if len(in_types) not in (4, 5):
        raise ShapeError("qconv2d_int8 takes (x, w, w_scale, w_colsum, [bias])")
    x, w, s, cs = in_types[:4]
    n, k = int(attrs["n"]), int(attrs["k"])
    (kh, kw), (s0, s1), (d0, d1), (p0, p1, p2, p3) = conv_geometry(attrs)
    if x is None or x.dtype != "float32" or x.rank != 4:
        raise ShapeError(f"qconv2d_int8: x must be float32 [N, C, H, W], got {x}")
    if isinstance(x.shape[1], int) and x.shape[1] * kh * kw != k:
        raise ShapeError(f"qconv2d_int8: C={x.shape[1]} x kernel {kh}x{kw} is not k={k}")
    if w is None or w.dtype != "int8" or w.shape != (-(-n // NB), -(-k // KB), NB, KB):
        raise ShapeError(f"qconv2d_int8: w must be int8 [{-(-n // NB)}, {-(-k // KB)}, 16, 4], "
                         f"got {w}")
    if s is None or s.shape != (n,) or cs is None or cs.shape != (n,) or cs.dtype != "int32":
        raise ShapeError(f"qconv2d_int8: w_scale float32 [{n}] and w_colsum int32 [{n}] needed")
    oh = _pool_len(x.shape[2], p0, p2, kh, s0, d0)
    ow = _pool_len(x.shape[3], p1, p3, kw, s1, d1)
    return [TensorType("float32", (x.shape[0], n, oh, ow))]


def _ref(ins: Sequence, attrs: Mapping[str, Any]) -> list:
    x, wp, s, _cs = ins[:4]
    bias = ins[4] if len(ins) > 4 else None
    n, k, xs = int(attrs["n"]), int(attrs["k"]), float(attrs["x_scale"])
    cols, (oh, ow) = im2col(quantize_activation(x, xs), attrs)   # int32 codes, exact
    acc = cols.astype(np.float64) @ unpack_int8(wp, n, k).astype(np.float64).T
    y = acc.astype(np.int32).astype(np.float32) * (np.float32(xs) * s.astype(np.float32))
    if bias is not None:
        y = y + bias.astype(np.float32)
    y = y.reshape(x.shape[0], oh, ow, n).transpose(0, 3, 1, 2)
    return [np.ascontiguousarray(y, dtype=np.float32)]


register_op("qconv2d_int8", _infer, _ref,
            doc="int8 W8A8 2-D conv (im2col GEMM): x per tensor, weights per output channel")

