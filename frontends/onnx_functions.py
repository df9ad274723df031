"""Expand ONNX ops that llmc has no converter for but ONNX defines as a function of other ops.

Why: many newer or composite ops (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss,
MeanVarianceNormalization, ...) come with a function body in their ONNX schema. Inlining that
body lets the frontend import them with the converters it already has instead of refusing.
"""
from __future__ import annotations

from typing import Callable, Sequence

import onnx
import onnx.defs
from onnx import helper

from llmc.dtypes import to_numpy
from llmc.ir import TensorType


def _type_proto(t: TensorType) -> onnx.TypeProto:
    elem = helper.np_dtype_to_tensor_dtype(to_numpy(t.dtype))
    shape = [d if isinstance(d, int) else str(d) for d in t.shape]
    return helper.make_tensor_type_proto(elem, shape)


def function_body(node: onnx.NodeProto, opset: int, input_types: Sequence[TensorType | None]
                  ) -> tuple[onnx.FunctionProto, int] | None:
    """The ONNX function defining ``node`` at ``opset`` and the opset its body uses, or None."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:
        return None
    versions = [v for v in schema.function_opset_versions if v <= opset]
    ctx_versions = [v for v in schema.context_dependent_function_opset_versions if v <= opset]
    full = onnx.NodeProto()
    full.CopyFrom(node)
    have = {a.name for a in node.attribute}
    for name, attr in schema.attributes.items():
        if name not in have and attr.default_value is not None and attr.default_value.name:
            full.attribute.extend([attr.default_value])
    fn = onnx.FunctionProto()
    if versions and (not ctx_versions or max(versions) >= max(ctx_versions)):
        fn.ParseFromString(schema.get_function_with_opset_version(max(versions)))
    elif ctx_versions:
        if any(t is None for t in input_types):
            return None
        types = [_type_proto(t).SerializeToString() for t in input_types]
        try:
            data = schema.get_context_dependent_function_with_opset_version(
                max(ctx_versions), full.SerializeToString(), types)
        except Exception:
            return None
        if not data:
            return None
        fn.ParseFromString(data)
    else:
        return None
    body_opset = next((int(o.version) for o in fn.opset_import if o.domain in ("", "ai.onnx")),
                      opset)
    return _bind(full, fn), body_opset


def _bind(node: onnx.NodeProto, fn: onnx.FunctionProto) -> onnx.FunctionProto:
    """Keep the node's attributes on the function for :func:`expand`."""
    fn.attribute_proto.extend([a for a in node.attribute
                               if a.name not in {p.name for p in fn.attribute_proto}])
    return fn


def expand(node: onnx.NodeProto, fn: onnx.FunctionProto, prefix: str) -> list[onnx.NodeProto]:
    """The body's nodes with the node's inputs/outputs and attributes substituted."""
    names: dict[str, str] = {}
    for k, name in enumerate(fn.input):
        names[name] = node.input[k] if k < len(node.input) else ""
    for k, name in enumerate(fn.output):
        if k < len(node.output) and node.output[k]:
            names[name] = node.output[k]
    attrs = {a.name: a for a in node.attribute}
    for a in fn.attribute_proto:
        attrs.setdefault(a.name, a)
    rename: Callable[[str], str] = lambda n: names.get(n, prefix + n if n else "")  # noqa: E731
    out = []
    for inner in fn.node:
        new = onnx.NodeProto()
        new.CopyFrom(inner)
        new.name = prefix + (inner.name or inner.op_type)
        del new.input[:]
        new.input.extend(rename(i) for i in inner.input)
        del new.output[:]
        new.output.extend(rename(o) for o in inner.output)
        del new.attribute[:]
        for a in inner.attribute:
            if a.type == onnx.AttributeProto.GRAPH or a.type == onnx.AttributeProto.GRAPHS:
                return []  # subgraphs in bodies: not expanded
            if a.ref_attr_name:
                if a.ref_attr_name in attrs:
                    b = onnx.AttributeProto()
                    b.CopyFrom(attrs[a.ref_attr_name])
                    b.name = a.name
                    new.attribute.append(b)
            else:
                new.attribute.append(a)
        out.append(new)
    return out
