"""int8 weight-only linear (W8A32): ``qlinear_int8_wo``.

Why a separate op from ``qlinear_int8`` (static W8A8): LLM decoding reads every weight once
per token, so the weight bytes are the cost and the arithmetic is nearly free. Keeping the
activations in float needs no calibration data and loses almost nothing; the int8 codes are a
quarter of fp32's bytes. The weight is stored in the x86 GEMV/GEMM panel layout (the one of
the fp32 packed matmul, :func:`llmc.backends.lowering.pack_weight`), so each thread streams
contiguous int8 panels and converts them to float in registers.

- ``qlinear_int8_wo``(x, w, scales, [bias]) {n, k}:
  x float32 [..., k]; w int8 [ceil(n/32), k, 32] (W[k, n] at ``[n // 32, k, n % 32]``, zero
  padded columns); scales float32 [n] (symmetric, per output channel);
  y = x @ (W * scales) + bias = (x @ W) * scales + bias, float32 [..., n].
- ``qlinear_int8_wo_grouped``(x, w, scales, [bias]) {n, k, group_size}: group-wise symmetric
  int8 weight-only. x float32 [..., k]; w int8 [ceil(n/64), k, 64] (W[k, n] at
  ``[n // 64, k, n % 64]``, zero padded: ``qlinear_int4``'s 64-column panels, one byte per
  code); scales float32 [ceil(n/64), k/group_size, 64] (one per group of ``group_size`` rows of
  K and output column, same panels, padded columns 0);
  y = sum_g (x[..., g*G:(g+1)*G] @ W[g*G:(g+1)*G]) * scales[g] + bias, float32 [..., n].

Why a sibling op and not a ``group_size`` attribute on ``qlinear_int8_wo``: an op has one
kernel kind (``@lower(kind=...)``). The per-channel op is the packed fp32 matmul's schedule
(32-column panels, scale in the epilogue), which stays the default and the fast path; the
group-wise one needs the int4 kernel's shape (64-column panels, a per-group partial sum in
registers scaled once per group: kind ``quant_int4``), so it has its own layout and op.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import ShapeError
from ..ir import TensorType
from . import register_op
from .quant import NP4, _from_panels, _to_panels

NB8 = 32   # output channels per int8 weight panel (two AVX-512 float accumulators)
QMAX = 127


def pack_int8_wo(wq: np.ndarray) -> np.ndarray:
    """int8 codes W [k, n] -> [ceil(n/32), k, 32] (zero padded): contiguous N panels."""
    k, n = wq.shape
    nb = -(-n // NB8)
    buf = np.zeros((k, nb * NB8), np.int8)
    buf[:, :n] = wq
    return np.ascontiguousarray(buf.reshape(k, nb, NB8).transpose(1, 0, 2))


def unpack_int8_wo(wp: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_int8_wo`: int8 codes [k, n]."""
    nb, k, blk = wp.shape
    return wp.transpose(1, 0, 2).reshape(k, nb * blk)[:, :n]


def quantize_weight_int8_wo(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float W [k, n] -> (packed int8 [ceil(n/32), k, 32], scales float32 [n]).

    Symmetric per output column: scale = max|W[:, n]| / 127, codes = round(W / scale)
    (half to even), so the largest weight of each column is exact up to rounding.
    """
    wf = np.asarray(w, np.float32)
    amax = np.abs(wf).max(axis=0)
    scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.round(wf / scale), -QMAX, QMAX).astype(np.int8)
    return pack_int8_wo(codes), scale


def dequant_int8_wo(wp: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """float32 W [k, n] of a packed int8 weight (what the kernel multiplies by)."""
    n = int(scales.shape[0])
    return unpack_int8_wo(wp, n).astype(np.float32) * scales.astype(np.float32)


# ------------------------------------------------------------------------- group-wise layout
def pack_int8_wo_grouped(wq: np.ndarray) -> np.ndarray:
    """int8 codes W [k, n] -> [ceil(n/64), k, 64] (zero padded): ``qlinear_int4``'s panels."""
    return _to_panels(np.asarray(wq, np.int8))


def unpack_int8_wo_grouped(wp: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_int8_wo_grouped`: int8 codes [k, n]."""
    return _from_panels(wp, n)


def quantize_weight_int8_wo_grouped(w: np.ndarray, group: int
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """float W [k, n] -> (packed int8 [ceil(n/64), k, 64], scales float32 [ceil(n/64), k/G, 64]).

    Symmetric per group of ``group`` rows of K and output column: scale = max|W[group, n]| / 127
    (1 for an all-zero group), codes = round(W / scale) (half to even), so one outlier only
    coarsens its own group instead of the whole column.
    """
    wf = np.asarray(w, np.float32)
    k, n = wf.shape
    if group < 1 or k % group:
        raise ShapeError(f"int8 group-wise: K={k} is not a multiple of the group size {group}")
    g = wf.reshape(k // group, group, n)
    amax = np.abs(g).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1.0)).astype(np.float32)
    codes = np.clip(np.round(g / scale[:, None, :]), -QMAX, QMAX).astype(np.int8)
    return pack_int8_wo_grouped(codes.reshape(k, n)), _to_panels(scale)


def dequant_int8_wo_grouped(wp: np.ndarray, scales: np.ndarray, n: int) -> np.ndarray:
    """float32 W [k, n] of a packed group-wise int8 weight (what the kernel multiplies by)."""
    codes = unpack_int8_wo_grouped(wp, n).astype(np.float32)
    s = _from_panels(scales, n).astype(np.float32)
    return codes * np.repeat(s, codes.shape[0] // s.shape[0], axis=0)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ShapeError(msg)


def _infer(in_types: Sequence[Optional[TensorType]], attrs: Mapping[str, Any]) -> list:
    _check(len(in_types) in (3, 4), "qlinear_int8_wo takes (x, w, scales, [bias])")
    x, w, s = in_types[:3]
    n, k = int(attrs["n"]), int(attrs["k"])
    _check(x is not None and x.dtype == "float32" and x.rank >= 1,
           f"qlinear_int8_wo: x must be float32 of rank >= 1, got {x}")
    _check(w is not None and w.dtype == "int8" and w.shape == (-(-n // NB8), k, NB8),
           f"qlinear_int8_wo: w must be int8 [{-(-n // NB8)}, {k}, {NB8}], got {w}")
    _check(s is not None and s.dtype == "float32" and s.shape == (n,),
           f"qlinear_int8_wo: scales must be float32 [{n}], got {s}")
    if len(in_types) > 3 and in_types[3] is not None:
        b = in_types[3]
        _check(b.dtype == "float32" and b.shape == (n,),
               f"qlinear_int8_wo: bias must be float32 [{n}], got {b}")
    if isinstance(x.shape[-1], int) and x.shape[-1] != k:
        raise ShapeError(f"qlinear_int8_wo: x's last dim {x.shape[-1]} is not k={k}")
    return [TensorType("float32", tuple(x.shape[:-1]) + (n,))]


def _reference(ins: Sequence, attrs: Mapping[str, Any]) -> list:
    x, wp, s = ins[:3]
    bias = ins[3] if len(ins) > 3 else None
    codes = unpack_int8_wo(wp, int(attrs["n"])).astype(np.float32)
    y = np.matmul(x.astype(np.float32), codes) * s.astype(np.float32)
    if bias is not None:
        y = y + bias.astype(np.float32)
    return [y.astype(np.float32)]


register_op("qlinear_int8_wo", _infer, _reference,
            doc="int8 weight-only linear (per-output-channel symmetric), float activations")


def _grouped_infer(in_types: Sequence[Optional[TensorType]], attrs: Mapping[str, Any]) -> list:
    op = "qlinear_int8_wo_grouped"
    _check(len(in_types) in (3, 4), f"{op} takes (x, w, scales, [bias])")
    x, w, s = in_types[:3]
    n, k, g = int(attrs["n"]), int(attrs["k"]), int(attrs["group_size"])
    nb = -(-n // NP4)
    _check(g >= 1 and k % g == 0, f"{op}: group_size {g} must divide k={k}")
    _check(x is not None and x.dtype == "float32" and x.rank >= 1,
           f"{op}: x must be float32 of rank >= 1, got {x}")
    _check(w is not None and w.dtype == "int8" and w.shape == (nb, k, NP4),
           f"{op}: w must be int8 [{nb}, {k}, {NP4}], got {w}")
    _check(s is not None and s.dtype == "float32" and s.shape == (nb, k // g, NP4),
           f"{op}: scales must be float32 [{nb}, {k // g}, {NP4}], got {s}")
    if len(in_types) > 3 and in_types[3] is not None:
        b = in_types[3]
        _check(b.dtype == "float32" and b.shape == (n,),
               f"{op}: bias must be float32 [{n}], got {b}")
    if isinstance(x.shape[-1], int) and x.shape[-1] != k:
        raise ShapeError(f"{op}: x's last dim {x.shape[-1]} is not k={k}")
    return [TensorType("float32", tuple(x.shape[:-1]) + (n,))]


def _grouped_reference(ins: Sequence, attrs: Mapping[str, Any]) -> list:
    """Per group: (x_g @ codes_g) * scale_g, summed over the groups (the kernel's order)."""
    x, wp, sp = ins[:3]
    bias = ins[3] if len(ins) > 3 else None
    n, k, g = int(attrs["n"]), int(attrs["k"]), int(attrs["group_size"])
    codes = unpack_int8_wo_grouped(wp, n).astype(np.float32).reshape(k // g, g, n)
    s = _from_panels(sp, n).astype(np.float32)                       # [k/g, n]
    xg = x.astype(np.float32).reshape(*x.shape[:-1], k // g, 1, g)   # [..., k/g, 1, g]
    part = np.matmul(xg, codes)[..., 0, :]                           # [..., k/g, n]
    y = (part * s).sum(axis=-2, dtype=np.float32)
    if bias is not None:
        y = y + bias.astype(np.float32)
    return [y.astype(np.float32)]


register_op("qlinear_int8_wo_grouped", _grouped_infer, _grouped_reference,
            doc="int8 weight-only linear, symmetric per (group of K rows, output channel)")
