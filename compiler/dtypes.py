"""The dtypes llmc's IR knows, by canonical name, and their numpy equivalents.

Names follow numpy ("float32", "int64", "bool"); bfloat16 comes from ml_dtypes because numpy
has none. Frontends map their own enums onto these names.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from .errors import ShapeError

_NUMPY: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
}

DTYPES: tuple[str, ...] = tuple(_NUMPY)
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})
INT_DTYPES = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


def to_numpy(dtype: str) -> np.dtype:
    """The numpy dtype for an llmc dtype name."""
    try:
        return _NUMPY[dtype]
    except KeyError:
        raise ShapeError(f"unknown dtype {dtype!r}; llmc knows {', '.join(DTYPES)}") from None


def from_numpy(dtype: np.dtype | type) -> str:
    """The llmc dtype name of a numpy dtype."""
    dt = np.dtype(dtype)
    for name, np_dt in _NUMPY.items():
        if np_dt == dt:
            return name
    raise ShapeError(f"numpy dtype {dt} has no llmc equivalent; llmc knows {', '.join(DTYPES)}")


def itemsize(dtype: str) -> int:
    """Bytes per element."""
    return to_numpy(dtype).itemsize


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def is_int(dtype: str) -> bool:
    return dtype in INT_DTYPES
