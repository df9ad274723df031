"""The bf16 option: float matmuls run on the array as bf16 x bf16 -> fp32 (``--precision bf16``).

Why an op of its own: the result depends on the array's summation order (fp32 partial sums per
fold, see :func:`.sim.functional.gemm_bf16`), so the reference needs the array's rows and
dataflow. ``systolic_linear_bf16``(x, w, [bias]) {rows, dataflow}: x float32 [..., K], w float32
[K, N] constant (rounded to bf16 on the array, as x is), bias float32 [N]; y float32 [..., N].
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from llmc.errors import ShapeError
from llmc.ir import TensorType
from llmc.ops import register_op

from .sim.config import SystolicConfig
from .sim.functional import gemm_bf16

OP = "systolic_linear_bf16"


def _infer(in_types: Sequence[TensorType | None], attrs: Mapping[str, Any]) -> list:
    x, w = in_types[:2]
    if x is None or w is None or x.dtype != "float32" or w.rank != 2 or x.rank < 2:
        raise ShapeError(f"{OP}: x float32 [..., K] and w [K, N] expected, got {x}, {w}")
    return [TensorType("float32", tuple(x.shape[:-1]) + (w.shape[1],))]


def linear_bf16(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, cfg: SystolicConfig,
                gemm=None) -> np.ndarray:
    """x [..., K] @ w on the bf16 array (+ bias in fp32)."""
    x2 = x.reshape(-1, x.shape[-1])
    acc = (gemm or (lambda a, b: gemm_bf16(a, b, cfg)))(x2, w)
    if bias is not None:
        acc = acc + bias.astype(np.float32)
    return acc.reshape(x.shape[:-1] + (w.shape[1],)).astype(np.float32)


def _reference(ins: Sequence[np.ndarray], attrs: Mapping[str, Any]) -> list:
    cfg = SystolicConfig(rows=int(attrs["rows"]), cols=1, dataflow=str(attrs["dataflow"]),
                         precision="bf16")
    return [linear_bf16(ins[0], ins[1], ins[2] if len(ins) > 2 else None, cfg)]


register_op(OP, _infer, _reference,
            doc="bf16 x bf16 -> fp32 linear on the systolic array (its fold summation order)")
