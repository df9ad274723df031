"""What the array computes, fold by fold, vectorized per fold (never per MAC in Python).

Why per fold and not one matmul: the fold structure is what makes the bf16 path's rounding
what the hardware's would be (each fold's column sums in fp32, then added to the accumulator),
and the int8 path shows that K-folded partial sums summed in int32 (wrapping) are exact.
"""
from __future__ import annotations

import numpy as np

from llmc.errors import ShapeError

from .config import SystolicConfig


def _check(a: np.ndarray, b: np.ndarray, dtype: str) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ShapeError(f"systolic gemm: operands {a.shape} and {b.shape} are not [M, K] x "
                         "[K, N]")
    if dtype == "int8" and (a.dtype != np.int8 or b.dtype != np.int8):
        raise ShapeError(f"systolic gemm: int8 array got {a.dtype} x {b.dtype}")


def gemm_int8(a: np.ndarray, b: np.ndarray, cfg: SystolicConfig) -> np.ndarray:
    """int8 [M, K] x int8 [K, N] -> int32 [M, N], what the array's int32 accumulators hold.

    The array adds each fold's partial sums (R products per PE column) into int32 accumulators
    with two's-complement wrap-around. Integer addition modulo 2^32 is associative, so the
    result equals the exact sum reduced modulo 2^32 whatever the fold order; the sum is
    computed in chunks of at most 1024 values of K, where float32 BLAS is exact (|partial| <=
    1024 * 2^14 = 2^24), added in int64, then wrapped to int32.
    """
    _check(a, b, "int8")
    m, k = a.shape
    n = b.shape[1]
    acc = np.zeros((m, n), np.int64)
    a32 = a.astype(np.float32)
    b32 = b.astype(np.float32)
    for k0 in range(0, k, _EXACT_K):
        acc += np.matmul(a32[:, k0:k0 + _EXACT_K], b32[k0:k0 + _EXACT_K]).astype(np.int64)
    return acc.astype(np.int32)   # wraps modulo 2^32 like an int32 accumulator


_EXACT_K = 1024   # int8 products summed over <= 2^10 terms stay below 2^24: exact in float32


def gemm_bf16(a: np.ndarray, b: np.ndarray, cfg: SystolicConfig) -> np.ndarray:
    """bf16 [M, K] x bf16 [K, N] -> fp32 [M, N]: exact products, fp32 sums in array order.

    Within a fold the partial sum flows through the R PEs of a column in order (fp32 add per
    PE); fold results are added to the fp32 accumulator in fold order. OS accumulates all of K
    in the PE in order.
    """
    import ml_dtypes

    _check(a, b, "bf16")
    a32 = np.asarray(a).astype(ml_dtypes.bfloat16).astype(np.float32)
    b32 = np.asarray(b).astype(ml_dtypes.bfloat16).astype(np.float32)
    m, k = a32.shape
    n = b32.shape[1]
    step = k if cfg.dataflow == "os" else cfg.rows
    acc = np.zeros((m, n), np.float32)
    for f0 in range(0, k, step):
        ps = np.zeros((m, n), np.float32)
        for kk in range(f0, min(f0 + step, k)):
            ps += a32[:, kk, None] * b32[None, kk, :]   # bf16 x bf16 is exact in fp32
        acc = ps if f0 == 0 and cfg.dataflow == "os" else acc + ps
    return acc
