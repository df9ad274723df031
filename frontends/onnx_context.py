"""The per-node view that ONNX op converters work with, and the converter registry.

A converter is a small function ``fn(c: NodeCtx) -> list`` registered for one ONNX op type
(or a family) with :func:`converter`. It reads inputs through ``c`` (as llmc values, as known
import-time values, or as their types), emits llmc ops with ``c.emit`` and returns one entry per
ONNX output: an llmc value name, a :class:`Known`, or ``None`` for an output it does not make.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import onnx
from onnx import helper

from llmc import dims as D
from llmc.errors import FrontendError, UnsupportedOpError
from llmc.ir import TensorType

from .onnx_known import Known

if TYPE_CHECKING:  # pragma: no cover
    from .onnx import Importer

Converter = Callable[["NodeCtx"], list]
CONVERTERS: dict[str, Converter] = {}
#: Ops the import-time evaluator handles (tried before the converter when inputs are known).
EVALUATORS: dict[str, Callable[["NodeCtx"], list]] = {}


def converter(*op_types: str) -> Callable[[Converter], Converter]:
    """Register ``fn`` as the converter of these ONNX op types (default domain)."""
    def deco(fn: Converter) -> Converter:
        for t in op_types:
            if t in CONVERTERS:
                raise ValueError(f"ONNX op {t} has two converters")
            CONVERTERS[t] = fn
        return fn
    return deco


def evaluator(*op_types: str) -> Callable:
    """Register an import-time evaluator (raises CannotEval when it cannot decide)."""
    def deco(fn):
        for t in op_types:
            EVALUATORS[t] = fn
        return fn
    return deco


def onnx_dtype(elem_type: int, where: str) -> str:
    """The llmc dtype name of an ONNX TensorProto element type."""
    from llmc.dtypes import from_numpy
    try:
        np_dt = helper.tensor_dtype_to_np_dtype(elem_type)
        return from_numpy(np_dt)
    except Exception:
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise UnsupportedOpError(f"ONNX element type {name} ({where}) is not supported by llmc; "
                                 "it handles bool, int8..int64, uint8..uint64, float16, "
                                 "bfloat16, float32, float64") from None


class NodeCtx:
    """One ONNX node being converted: its inputs, attributes, opset and an emitter."""

    def __init__(self, imp: "Importer", node: onnx.NodeProto, opset: int) -> None:
        self.imp = imp
        self.node = node
        self.op_type = node.op_type
        imp.node_count += 1
        self.name = node.name or f"{node.op_type}_{imp.node_count}"
        self.opset = opset
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self.attrs: dict[str, Any] = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [x.decode("utf-8", "replace") for x in v]
            self.attrs[a.name] = v

    # ------------------------------------------------------------------ errors
    def where(self) -> str:
        return f"node '{self.name}', opset {self.opset}"

    def unsupported(self, what: str) -> UnsupportedOpError:
        """An error for an attribute value / input form llmc does not handle."""
        return UnsupportedOpError(f"ONNX {self.op_type} ({self.where()}): {what} is not supported "
                                  "by llmc; file an issue or change the model")

    def error(self, what: str) -> FrontendError:
        return FrontendError(f"ONNX {self.op_type} ({self.where()}): {what}")

    # ------------------------------------------------------------------ inputs
    def n_in(self) -> int:
        return len(self.inputs)

    def has(self, i: int) -> bool:
        """Whether optional input ``i`` is present."""
        return i < len(self.inputs) and self.inputs[i] != ""

    def x(self, i: int) -> str:
        """Input ``i`` as an llmc value name (materialized if it is a known value); "" if absent."""
        if not self.has(i):
            return ""
        return self.imp.tensor(self.inputs[i])

    def xs(self) -> list[str]:
        return [self.x(i) for i in range(len(self.inputs)) if self.has(i)]

    def known(self, i: int) -> Known | None:
        return self.imp.known_value(self.inputs[i]) if self.has(i) else None

    def type(self, i: int) -> TensorType:
        return self.imp.type_of(self.inputs[i])

    def dtype(self, i: int) -> str:
        return self.type(i).dtype

    def shape(self, i: int) -> tuple:
        return self.type(i).shape

    def rank(self, i: int) -> int:
        return len(self.type(i).shape)

    def const(self, i: int, what: str) -> np.ndarray:
        """Input ``i`` as a static numpy array; a clear error if it is computed at run time."""
        k = self.known(i)
        if k is None or not k.is_static:
            raise self.unsupported(f"a {what} computed at run time (input {i} "
                                   f"'{self.inputs[i]}' is data-dependent, not a constant)")
        return k.value

    def dims(self, i: int, what: str) -> list:
        """Input ``i`` as a list of dims (ints or symbolic); error if data-dependent."""
        k = self.known(i)
        if k is None:
            raise self.unsupported(f"a {what} that depends on tensor data at run time (input "
                                   f"'{self.inputs[i]}'); llmc needs shapes decidable at import")
        return k.dims()

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def axis(self, a: int, rank: int) -> int:
        """A non-negative axis."""
        if not -rank <= a < max(rank, 1):
            raise self.error(f"axis {a} out of range for rank {rank}")
        return a % rank if rank else 0

    # ------------------------------------------------------------------ emit
    def emit(self, op: str, inputs: list[str], attrs: dict | None = None) -> str:
        """Append one llmc node with a single output; returns its value name."""
        return self.imp.emit(op, inputs, attrs or {}, self.name)

    def emit_multi(self, op: str, inputs: list[str], attrs: dict, n: int) -> list[str]:
        return self.imp.emit_multi(op, inputs, attrs, self.name, n)

    def cast(self, v: str, dtype: str) -> str:
        """``v`` cast to ``dtype`` (no node if it already has it)."""
        if self.imp.graph.types[v].dtype == dtype:
            return v
        return self.emit("cast", [v], {"to": dtype})

    def scalar(self, value, dtype: str) -> str:
        """A 0-d constant of ``dtype``."""
        from llmc.dtypes import to_numpy
        return self.imp.graph.add_constant(np.array(value, dtype=to_numpy(dtype)), f"{self.name}_c")

    def out_used(self, i: int) -> bool:
        """Whether output ``i`` exists and something (a node or the graph) reads it."""
        return i < len(self.outputs) and self.outputs[i] != "" and \
            self.outputs[i] in self.imp.used_names


def dims_of(shape: tuple) -> list:
    return [D.dim(d) for d in shape]
