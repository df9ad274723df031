"""llmc's op set: every op with its shape/dtype inference and a numpy reference.

An op is registered once with :func:`register_op`; frontends emit it, passes rewrite it,
backends lower it, and the numpy reference (:mod:`llmc.interpreter`) is the oracle that
passes and backends are checked against. The catalogue with each op's inputs and
attributes is docs/ops.md; the families live in the modules imported at the bottom.

Conventions for every op:
- ``infer(in_types, attrs) -> list[TensorType]``: ``in_types`` has ``None`` for omitted
  optional inputs; raise :class:`ShapeError` (message without node name; the caller adds it).
- ``reference(inputs, attrs) -> list[np.ndarray]``: numpy arrays in, arrays out, exactly
  the dtypes and shapes that ``infer`` promised.
- Attributes are plain Python values: int, float, str, bool, lists of them, and dims
  (int or sympy expression) where a shape is meant. No numpy scalars, no tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import TensorType

InferFn = Callable[[Sequence[Optional[TensorType]], Mapping[str, Any]], list]
RefFn = Callable[[Sequence[Optional[np.ndarray]], Mapping[str, Any]], list]


@dataclass(frozen=True)
class OpDef:
    name: str
    infer: InferFn
    reference: RefFn
    doc: str = ""


_REGISTRY: dict[str, OpDef] = {}


def register_op(name: str, infer: InferFn, reference: RefFn, doc: str = "") -> OpDef:
    """Add an op to the registry (one definition per name)."""
    if name in _REGISTRY:
        raise ValueError(f"op {name!r} registered twice")
    opdef = OpDef(name, infer, reference, doc)
    _REGISTRY[name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnsupportedOpError(f"llmc IR has no op {name!r}") from None


def all_ops() -> dict[str, OpDef]:
    return dict(_REGISTRY)


# The op families; importing them registers their ops.
from . import elementwise, nn, quant, reduce, shape_ops  # noqa: E402,F401
from . import layout  # noqa: E402,F401  (blocked-channel ops; needs nn)
from . import fused  # noqa: E402,F401  (the fused-group op; needs the families above)
from . import quant_w8  # noqa: E402,F401  (int8 weight-only linear: qlinear_int8_wo)
from . import quant_conv  # noqa: E402,F401  (int8 W8A8 conv: qconv2d_int8)
from . import kv_cache  # noqa: E402,F401  (in-place KV cache writes: kv_cache_write)
from . import rope  # noqa: E402,F401  (rotary position embedding in one op)
