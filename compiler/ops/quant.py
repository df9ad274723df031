"""Quantized linear ops: int8 W8A8 (integer dot products) and int4 group-wise weight-only.

Why fused ops instead of quantize/matmul/dequantize chains: the win of low precision on a CPU
comes from running the inner product in integers (int8) or reading fewer weight bytes (int4);
both only happen when quantization of the activation, the integer dot product and the
per-channel rescale are one kernel. The weights are stored in the layout the x86 kernel reads
(packed offline by :mod:`llmc.passes.quantize` / :mod:`llmc.passes.int4`), so the backend needs
no repacking step. Helpers here pack/unpack those layouts; the numpy references are exact
(integer arithmetic), so the backend must match them bit for bit up to float rounding.

- ``qlinear_int8``(x, w, w_scale, w_colsum, [bias], [smooth]) {n, k, x_scale}:
  x float32 [..., k]; w int8 [ceil(n/16), ceil(k/4), 16, 4] (w[n, k] at
  ``[n // 16, k // 4, n % 16, k % 4]``, zero padded); w_scale float32 [n];
  w_colsum int32 [n] (sum over k of w[n, :], the compensation of the u8 shift);
  bias float32 [n]; smooth float32 [k] (SmoothQuant: x is multiplied by it first).
  optional attrs x_zero_point (int, default 0) and x_qmin (default -127; -128 for QDQ models):
  xq = clip(round_half_even(x * smooth / x_scale) + x_zero_point, x_qmin, 127) - x_zero_point;
  y = (xq @ w.T) * (x_scale * w_scale) + bias -> float32 [..., n].
  The kernel computes xq + 128 (uint8) times w (int8) in int32 (VNNI's u8 x s8 form) and
  subtracts 128 * w_colsum.
- ``qlinear_int4``(x, w, scales, zeros, [bias]) {n, k, group_size}:
  x float [..., k]; w uint8 [ceil(n/64), k/2, 64]: contiguous panels of 64 output columns,
  W's codes for (k, n) in byte ``[n // 64, k // 2, n % 64]``, k even in the low nibble, k odd
  in the high nibble; scales float16 [ceil(n/64), k/group_size, 64]; zeros uint8
  [ceil(n/64), k/group_size, 64] (asymmetric zero point, 0..15); padded columns are 0;
  W[k, n] = (code[k, n] - zeros[k // g, n]) * scales[k // g, n]; y = x @ W + bias, float32
  accumulation, output dtype = x's dtype. The panel layout makes each thread's share of the
  weight one contiguous stream (the M = 1 decode GEMV is bound by reading it).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from . import register_op

NB = 16   # output channels per int8 weight panel (one 512-bit VNNI accumulator)
KB = 4    # reduction elements per VNNI dot (4 bytes per 32-bit lane)
QMAX8 = 127


# --------------------------------------------------------------------------- int8 layout
def pack_int8(wq: np.ndarray) -> np.ndarray:
    """int8 [n, k] -> [ceil(n/16), ceil(k/4), 16, 4], zero padded (the VNNI panel layout)."""
    n, k = wq.shape
    npad, kpad = -(-n // NB) * NB, -(-k // KB) * KB
    buf = np.zeros((npad, kpad), np.int8)
    buf[:n, :k] = wq
    return np.ascontiguousarray(buf.reshape(npad // NB, NB, kpad // KB, KB).transpose(0, 2, 1, 3))


def unpack_int8(wp: np.ndarray, n: int, k: int) -> np.ndarray:
    """Inverse of :func:`pack_int8`: int8 [n, k]."""
    nb, kb = wp.shape[0], wp.shape[1]
    return wp.transpose(0, 2, 1, 3).reshape(nb * NB, kb * KB)[:n, :k]


def quantize_activation(x: np.ndarray, x_scale: float, smooth: np.ndarray | None = None,
                        zero_point: int = 0, qmin: int = -QMAX8) -> np.ndarray:
    """The activation quantizer of ``qlinear_int8``: int8 codes minus the zero point.

    Default symmetric (zero point 0, range +-127); QDQ models bring their own zero point
    and the full [-128, 127] range.
    """
    xs = x.astype(np.float32)
    if smooth is not None:
        xs = xs * smooth.astype(np.float32)
    q = np.round(xs / np.float32(x_scale)) + np.float32(zero_point)
    return (np.clip(q, qmin, QMAX8) - zero_point).astype(np.int32)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ShapeError(msg)


def _int8_infer(in_types: Sequence[Optional[TensorType]], attrs: Mapping[str, Any]) -> list:
    _check(len(in_types) in (4, 5, 6), "qlinear_int8 takes (x, w, w_scale, w_colsum, [bias], "
           "[smooth])")
    x, w, s, cs = in_types[:4]
    n, k = int(attrs["n"]), int(attrs["k"])
    _check(x is not None and x.dtype == "float32" and x.rank >= 1,
           f"qlinear_int8: x must be float32 of rank >= 1, got {x}")
    _check(w is not None and w.dtype == "int8" and w.shape == (-(-n // NB), -(-k // KB), NB, KB),
           f"qlinear_int8: w must be int8 [{-(-n // NB)}, {-(-k // KB)}, 16, 4], got {w}")
    _check(s is not None and s.dtype == "float32" and s.shape == (n,),
           f"qlinear_int8: w_scale must be float32 [{n}], got {s}")
    _check(cs is not None and cs.dtype == "int32" and cs.shape == (n,),
           f"qlinear_int8: w_colsum must be int32 [{n}], got {cs}")
    if x.shape[-1] != k and isinstance(x.shape[-1], int):
        raise ShapeError(f"qlinear_int8: x's last dim {x.shape[-1]} is not k={k}")
    return [TensorType("float32", tuple(x.shape[:-1]) + (n,))]


def _opt(ins: Sequence, i: int):
    return ins[i] if len(ins) > i else None


def _int8_ref(ins: Sequence, attrs: Mapping[str, Any]) -> list:
    x, wp, s, _cs = ins[:4]
    bias, smooth = _opt(ins, 4), _opt(ins, 5)
    n, k, xs = int(attrs["n"]), int(attrs["k"]), float(attrs["x_scale"])
    xq = quantize_activation(x, xs, smooth, int(attrs.get("x_zero_point", 0)),
                             int(attrs.get("x_qmin", -QMAX8)))
    w = unpack_int8(wp, n, k).astype(np.float64)
    acc = np.matmul(xq.astype(np.float64), w.T)  # exact: |acc| < 2^53
    y = acc.astype(np.int32).astype(np.float32) * (np.float32(xs) * s.astype(np.float32))
    if bias is not None:
        y = y + bias.astype(np.float32)
    return [y.astype(np.float32)]


register_op("qlinear_int8", _int8_infer, _int8_ref,
            doc="int8 W8A8 linear: x quantized per tensor, int8 weights per output channel")


# --------------------------------------------------------------------------- int4 layout
NP4 = 64  # output columns per int4 weight panel (64 bytes = one cache line per 2 rows of K)


def int4_panels(n: int) -> int:
    """Number of :data:`NP4`-wide panels of an int4 weight with n output columns."""
    return -(-n // NP4)


def _to_panels(a: np.ndarray) -> np.ndarray:
    """[r, n] -> [ceil(n/64), r, 64], zero padded columns."""
    r, n = a.shape
    nb = int4_panels(n)
    buf = np.zeros((r, nb * NP4), a.dtype)
    buf[:, :n] = a
    return np.ascontiguousarray(buf.reshape(r, nb, NP4).transpose(1, 0, 2))


def _from_panels(p: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`_to_panels`: [r, n]."""
    nb, r, blk = p.shape
    return np.ascontiguousarray(p.transpose(1, 0, 2).reshape(r, nb * blk)[:, :n])


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """uint8 codes 0..15 [k, n] (k even) -> panels uint8 [ceil(n/64), k/2, 64] (the op's w)."""
    k = codes.shape[0]
    if k % 2:
        raise ShapeError(f"pack_int4: k={k} must be even")
    c = codes.astype(np.uint8)
    return _to_panels((c[0::2] & 15) | ((c[1::2] & 15) << 4))


def pack_int4_params(scales: np.ndarray, zeros: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scales / zeros [k/g, n] -> their panel layouts [ceil(n/64), k/g, 64] (float16, uint8)."""
    return _to_panels(np.asarray(scales, np.float16)), _to_panels(np.asarray(zeros, np.uint8))


def unpack_int4(packed: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: uint8 codes [k, n]."""
    p = _from_panels(packed, n)
    out = np.empty((p.shape[0] * 2, n), np.uint8)
    out[0::2] = p & 15
    out[1::2] = p >> 4
    return out


def unpack_int4_params(scales: np.ndarray, zeros: np.ndarray, n: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Panel scales / zeros -> ([k/g, n] float16, [k/g, n] uint8)."""
    return _from_panels(scales, n), _from_panels(zeros, n)


def dequant_int4(packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group: int,
                 n: int) -> np.ndarray:
    """float32 W [k, n] of a packed int4 weight (what the kernel multiplies by)."""
    codes = unpack_int4(packed, n).astype(np.float32)
    s, z = unpack_int4_params(scales, zeros, n)
    s = np.repeat(s.astype(np.float32), group, axis=0)
    z = np.repeat(z.astype(np.float32), group, axis=0)
    return (codes - z) * s


def _int4_infer(in_types: Sequence[Optional[TensorType]], attrs: Mapping[str, Any]) -> list:
    _check(len(in_types) in (4, 5), "qlinear_int4 takes (x, w, scales, zeros, [bias])")
    x, w, s, z = in_types[:4]
    n, k, g = int(attrs["n"]), int(attrs["k"]), int(attrs["group_size"])
    _check(k % g == 0 and g % 2 == 0, f"qlinear_int4: group_size {g} must be even and divide k={k}")
    _check(x is not None and x.dtype in ("float32", "float16", "bfloat16") and x.rank >= 1,
           f"qlinear_int4: x must be float of rank >= 1, got {x}")
    nb = int4_panels(n)
    _check(w is not None and w.dtype == "uint8" and w.shape == (nb, k // 2, NP4),
           f"qlinear_int4: w must be uint8 [{nb}, {k // 2}, {NP4}], got {w}")
    _check(s is not None and s.dtype == "float16" and s.shape == (nb, k // g, NP4),
           f"qlinear_int4: scales must be float16 [{nb}, {k // g}, {NP4}], got {s}")
    _check(z is not None and z.dtype == "uint8" and z.shape == (nb, k // g, NP4),
           f"qlinear_int4: zeros must be uint8 [{nb}, {k // g}, {NP4}], got {z}")
    if isinstance(x.shape[-1], int) and x.shape[-1] != k:
        raise ShapeError(f"qlinear_int4: x's last dim {x.shape[-1]} is not k={k}")
    return [TensorType(x.dtype, tuple(x.shape[:-1]) + (n,))]


def _int4_ref(ins: Sequence, attrs: Mapping[str, Any]) -> list:
    x, w, s, z = ins[:4]
    bias = _opt(ins, 4)
    W = dequant_int4(w, s, z, int(attrs["group_size"]), int(attrs["n"]))
    y = np.matmul(x.astype(np.float32), W)
    if bias is not None:
        y = y + bias.astype(np.float32)
    return [y.astype(x.dtype)]


register_op("qlinear_int4", _int4_infer, _int4_ref,
            doc="int4 group-wise asymmetric weight-only linear, dequantized inside the kernel")
