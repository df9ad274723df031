"""The ``fused`` op: a group of nodes that a backend compiles into one kernel.

The fuse pass (:mod:`llmc.passes.fuse`) replaces a connected group of nodes by one ``fused``
node whose ``body`` attribute is an llmc :class:`~llmc.ir.Graph` (inputs and outputs matched
to the node's by position) and whose ``kind`` says how the group is scheduled
("elementwise", "matmul_epilogue", "reduction", "attention"). Shape inference and the numpy
reference simply run the body, so the oracle, the verifier and every numeric check keep
working on fused graphs without knowing about fusion.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import ShapeError
from ..ir import Graph, TensorType
from . import register_op

KINDS = ("elementwise", "matmul_epilogue", "reduction", "attention", "conv_epilogue")


def _body(attrs: Mapping[str, Any]) -> Graph:
    body = attrs.get("body")
    if not isinstance(body, Graph):
        raise ShapeError("fused: attribute 'body' must be an llmc Graph")
    if attrs.get("kind") not in KINDS:
        raise ShapeError(f"fused: kind {attrs.get('kind')!r} is not one of {KINDS}")
    return body


def _infer(in_types: Sequence[Optional[TensorType]], attrs: Mapping[str, Any]) -> list:
    body = _body(attrs)
    if len(in_types) != len(body.inputs):
        raise ShapeError(f"fused: {len(in_types)} inputs given, body takes {len(body.inputs)}")
    for t, name in zip(in_types, body.inputs):
        want = body.types[name]
        if t is None or t.dtype != want.dtype or t.rank != want.rank:
            raise ShapeError(f"fused: input {name!r} is {t}, body expects {want}")
    return [body.types[o] for o in body.outputs]


def _reference(inputs: Sequence[Optional[np.ndarray]], attrs: Mapping[str, Any]) -> list:
    from ..interpreter import run_reference

    body = _body(attrs)
    out = run_reference(body, dict(zip(body.inputs, inputs)))
    return [out[o] for o in body.outputs]


register_op("fused", _infer, _reference,
            "A group of nodes compiled as one kernel; attrs: kind (str), body (Graph).")
