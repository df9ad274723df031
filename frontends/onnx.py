"""ONNX frontend: an ONNX model (file or ModelProto) -> an llmc :class:`~llmc.ir.Graph`.

Why it exists: ONNX is the common exchange format; this module reads a model, checks it,
normalizes every attribute that can be decided at import (auto_pad, negative axes, shape
arguments computed by ``Shape -> Gather -> Concat`` chains, -1/0 in reshape targets) and maps
each node onto llmc's op set (docs/ops.md), so later stages see plain attributes only.

The converters live in ``onnx_ops_*.py`` (one function per ONNX op or family, registered in a
dict); import-time evaluation of shape arithmetic in ``onnx_known.py``.
"""
from __future__ import annotations

import os
import re
from typing import Mapping, Sequence

import numpy as np
import onnx
import onnx.inliner
from onnx import numpy_helper

from llmc import dims as D
from llmc.errors import FrontendError, LlmcError, UnsupportedOpError
from llmc.ir import Graph, TensorType

from . import onnx_functions
from . import onnx_known as K
from .onnx_context import CONVERTERS, EVALUATORS, NodeCtx, onnx_dtype
from . import onnx_ops_elementwise, onnx_ops_nn, onnx_ops_shape  # noqa: F401  (register)

__all__ = ["import_onnx", "load_model", "supported_ops"]

#: Oldest default-domain opset the frontend accepts (numpy broadcasting semantics since 7).
MIN_OPSET = 7
#: Newest opset the converters were written against; newer files import op by op (ops whose
#: semantics changed later raise, or import through their ONNX function body).
MAX_OPSET = 21


def supported_ops() -> list[str]:
    """ONNX op types (default domain) this frontend converts."""
    return sorted(set(CONVERTERS) | set(EVALUATORS))


def import_onnx(model: str | os.PathLike | onnx.ModelProto, *,
                input_shapes: Mapping[str, Sequence[object]] | None = None) -> Graph:
    """Import an ONNX model as an llmc Graph.

    ``model`` is a path (external data files are read from next to it) or a ModelProto.
    ``input_shapes`` overrides input dims by name: ints, symbol names (str) or None (a fresh
    symbol). Value names of the graph's inputs and outputs stay the ONNX names.
    """
    proto, where = load_model(model)
    return Importer(proto, where, input_shapes or {}).run()


# ============================================================================ loading
def load_model(model: str | os.PathLike | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Read and check a model; returns (proto, a description for error messages)."""
    if isinstance(model, onnx.ModelProto):
        proto, where = model, f"in-memory model '{model.graph.name}'"
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        where = f"'{path}'"
        if not os.path.isfile(path):
            raise FrontendError(f"ONNX file {where} does not exist")
        try:
            proto = onnx.load(path, load_external_data=True)
        except FileNotFoundError as exc:
            raise FrontendError(f"ONNX file {where}: an external data file is missing "
                                f"({exc.filename or exc}); keep it next to the model") from None
        except Exception as exc:  # DecodeError, ValidationError, ...
            raise FrontendError(f"cannot read ONNX file {where}: not a valid ONNX protobuf "
                                f"({type(exc).__name__}: {str(exc)[:200]}); the file may be "
                                "truncated or not an ONNX model") from None
    else:
        raise FrontendError(f"import_onnx expects a path or onnx.ModelProto, got "
                            f"{type(model).__name__}")
    if not proto.HasField("graph") or (not proto.graph.node and not proto.graph.output):
        raise FrontendError(f"ONNX file {where} holds no graph (empty or not an ONNX model)")
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    _check_structure(proto.graph, where)
    try:
        onnx.checker.check_model(proto)
    except ValueError as exc:
        if "2GB" not in str(exc) and "2 GB" not in str(exc):
            raise FrontendError(f"ONNX model {where} fails onnx.checker: "
                                f"{str(exc)[:400]}") from None
    except onnx.checker.ValidationError as exc:
        if not any(m in str(exc) for m in _LENIENT_CHECKS):
            raise FrontendError(f"ONNX model {where} fails onnx.checker: {str(exc)[:400]}") \
                from None
    return proto, where


#: onnx.checker complaints that do not stop an import (ONNX Runtime accepts such models too):
#: graph outputs declared without a shape or type; llmc infers those itself.
_LENIENT_CHECKS = ("Field 'shape' of 'type' is required",
                   "Field 'type' of 'value_info' is required")


def _check_structure(graph: onnx.GraphProto, where: str) -> None:
    """Every node input is defined, and nodes form no cycle (clear errors before the checker)."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer} | \
        {t.values.name for t in graph.sparse_initializer}
    produced = {o for n in graph.node for o in n.output if o}
    for n in graph.node:
        for i in n.input:
            if i and i not in defined and i not in produced:
                raise FrontendError(
                    f"ONNX model {where}: node '{n.name}' ({n.op_type}) reads '{i}', which no "
                    "graph input, initializer or node defines (missing initializer or a broken "
                    "file)")
    for o in graph.output:
        if o.name not in defined and o.name not in produced:
            raise FrontendError(f"ONNX model {where}: graph output '{o.name}' is never defined")
    _topo_order(graph, where)


def _topo_order(graph: onnx.GraphProto, where: str) -> list[onnx.NodeProto]:
    """Nodes in a topological order (ONNX requires one; accept any and detect cycles)."""
    producer = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    deps = [{producer[i] for i in n.input if i in producer} for n in graph.node]
    order, state = [], [0] * len(graph.node)
    for start in range(len(graph.node)):
        if state[start]:
            continue
        stack = [(start, iter(sorted(deps[start])))]
        state[start] = 1
        while stack:
            k, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                state[k] = 2
                order.append(graph.node[k])
            elif state[nxt] == 1:
                n = graph.node[nxt]
                raise FrontendError(f"ONNX model {where} has a cycle through node '{n.name}' "
                                    f"({n.op_type})")
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(sorted(deps[nxt]))))
    return order


def _sanitize(name: str) -> str:
    if isinstance(name, bytes):  # protobuf hands proto2 strings with invalid UTF-8 back as bytes
        name = name.decode("utf-8", errors="replace")
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if re.match(r"[A-Za-z_]", out) else "d_" + out


# ============================================================================ importer
class Importer:
    """State of one import: the llmc graph, ONNX name -> llmc value, and known values."""

    def __init__(self, proto: onnx.ModelProto, where: str,
                 input_shapes: Mapping[str, Sequence[object]]) -> None:
        self.proto = proto
        self.where = where
        self.input_shapes = dict(input_shapes)
        self.graph = Graph(proto.graph.name or "model")
        self.env: dict[str, str] = {}
        self.known: dict[str, K.Known] = {}
        self.initializers: dict[str, np.ndarray] = {}
        self.used_names: set[str] = set()
        self.opset = self._default_opset()
        self._unk = 0
        self._fn_count = 0
        self.node_count = 0
        self._bound: set[str] = set()  # llmc values some ONNX name maps to
        self._bad_initializers: dict[str, UnsupportedOpError] = {}

    def _default_opset(self) -> int:
        for imp in self.proto.opset_import:
            if imp.domain in ("", "ai.onnx"):
                return int(imp.version)
        return MAX_OPSET  # only other domains: their nodes are refused one by one

    # ------------------------------------------------------------------ driver
    def run(self) -> Graph:
        g = self.proto.graph
        if self.opset < MIN_OPSET:
            raise UnsupportedOpError(f"ONNX model {self.where} uses opset {self.opset}; llmc "
                                     f"supports opset {MIN_OPSET} and newer (tested up to "
                                     f"{MAX_OPSET}+): convert it with onnx.version_converter")
        for name in self._all_value_names(g):
            self.graph.fresh_name(name)  # reserve ONNX names so llmc's own never collide
        self.used_names = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    self.used_names |= _subgraph_reads(a.g)
        self._load_initializers(g)
        self._add_inputs(g)
        for node in _topo_order(g, self.where):
            self.convert_node(node)
        self._bind_outputs(g)
        return self.graph

    @staticmethod
    def _all_value_names(g: onnx.GraphProto) -> list[str]:
        names = [i.name for i in g.input] + [t.name for t in g.initializer]
        names += [o for n in g.node for o in n.output if o]
        return names

    def _load_initializers(self, g: onnx.GraphProto) -> None:
        if len(g.sparse_initializer):
            raise UnsupportedOpError(f"ONNX model {self.where} has sparse initializers, which "
                                     "llmc does not support; densify them first")
        for t in g.initializer:
            try:
                dtype = onnx_dtype(t.data_type, f"initializer '{t.name}'")
            except UnsupportedOpError as exc:  # refused only if something reads it
                self._bad_initializers[t.name] = exc
                continue
            try:
                arr = numpy_helper.to_array(t)
            except Exception as exc:
                raise FrontendError(f"ONNX model {self.where}: cannot read initializer "
                                    f"'{t.name}' ({exc})") from None
            self.initializers[t.name] = arr
            if K.trackable(dtype, arr.size):
                self.known[t.name] = K.Known(arr, dtype)

    def _input_dim(self, d: onnx.TensorShapeProto.Dimension) -> D.Dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            return int(d.dim_value)
        if d.HasField("dim_value") and d.dim_value == 0:
            return 0
        if d.HasField("dim_param") and d.dim_param:
            return D.sym(_sanitize(d.dim_param))
        return self._fresh_symbol()

    def _fresh_symbol(self) -> D.Dim:
        name = f"unk_{self._unk}"
        self._unk += 1
        return D.sym(name)

    def _override_dim(self, v: object) -> D.Dim:
        if v is None:
            return self._fresh_symbol()
        if isinstance(v, str):
            return D.sym(_sanitize(v)) if re.fullmatch(r"[A-Za-z_]\w*", v) else D.parse_dim(v)
        return D.dim(v)

    def _add_inputs(self, g: onnx.GraphProto) -> None:
        inits = set(self.initializers) | set(self._bad_initializers)
        for vi in g.input:
            if vi.name in inits:
                continue
            if not vi.type.HasField("tensor_type"):
                raise UnsupportedOpError(f"ONNX model {self.where}: input '{vi.name}' is not a "
                                         "tensor (sequences/maps/optionals are not supported)")
            tt = vi.type.tensor_type
            dtype = onnx_dtype(tt.elem_type, f"input '{vi.name}'")
            if vi.name in self.input_shapes:
                shape = tuple(self._override_dim(v) for v in self.input_shapes[vi.name])
            elif not tt.HasField("shape"):
                raise FrontendError(f"ONNX model {self.where}: input '{vi.name}' has no shape "
                                    "(not even a rank); pass input_shapes={name: [...]}")
            else:
                shape = tuple(self._input_dim(d) for d in tt.shape.dim)
            self.graph.add_input(vi.name, dtype, shape)
            self._set_env(vi.name, vi.name)
        unknown = set(self.input_shapes) - {vi.name for vi in g.input}
        if unknown:
            raise FrontendError(f"input_shapes names {sorted(unknown)}, which are not inputs of "
                                f"{self.where}; its inputs are {[vi.name for vi in g.input]}")

    def _bind_outputs(self, g: onnx.GraphProto) -> None:
        outs: list[str] = []
        read = {i for n in self.graph.nodes for i in n.inputs}
        for o in g.output:
            v = self.tensor(o.name)
            if v != o.name and o.name not in self.graph.types:
                if v in self.graph.constants and v not in read and v not in outs:
                    v = self._rename_constant(v, o.name)
                else:
                    v = self.graph.add_node("identity", [v], {}, name=o.name,
                                            outputs=[o.name])[0]
            outs.append(v)
        self.graph.set_outputs(outs)

    # ------------------------------------------------------------------ values
    def type_of(self, name: str) -> TensorType:
        """The llmc type of an ONNX value (materialized or known)."""
        if name in self._bad_initializers:
            raise self._bad_initializers[name]
        if name in self.env:
            return self.graph.types[self.env[name]]
        if name in self.known:
            k = self.known[name]
            return TensorType(k.dtype, k.shape)
        if name in self.initializers:
            from llmc.dtypes import from_numpy
            arr = self.initializers[name]
            return TensorType(from_numpy(arr.dtype), arr.shape)
        raise FrontendError(f"ONNX model {self.where}: value '{name}' is used before it is "
                            "defined")

    def known_value(self, name: str) -> K.Known | None:
        return self.known.get(name)

    def tensor(self, name: str) -> str:
        """The llmc value for an ONNX value, materializing known values and initializers."""
        if name in self.env:
            return self.env[name]
        if name in self._bad_initializers:
            raise self._bad_initializers[name]
        if name in self.known:
            v = self._materialize(self.known[name], name)
        elif name in self.initializers:
            v = self._named_constant(self.initializers[name], name)
        else:
            raise FrontendError(f"ONNX model {self.where}: value '{name}' is used before it is "
                                "defined")
        self._set_env(name, v)
        return v

    def _set_env(self, onnx_name: str, value: str) -> None:
        self.env[onnx_name] = value
        self._bound.add(value)

    def _named_constant(self, arr: np.ndarray, name: str) -> str:
        v = self.graph.add_constant(arr, name)
        return self._rename_constant(v, name) if name not in self.graph.types else v

    def _rename_constant(self, v: str, name: str) -> str:
        self.graph.constants[name] = self.graph.constants.pop(v)
        self.graph.types[name] = self.graph.types.pop(v)
        for k, val in self.env.items():
            if val == v:
                self.env[k] = name
        self._bound.discard(v)
        self._bound.add(name)
        return name

    def _materialize(self, k: K.Known, name: str) -> str:
        if k.is_static:
            return self._named_constant(k.value, name)
        flat = k.dims()
        v = self.graph.add_node("dims_tensor", [], {"values": flat, "dtype": k.dtype},
                                name=f"{name}_dims")[0]
        if k.shape != (len(flat),):
            v = self.graph.add_node("reshape", [v], {"shape": list(k.shape)},
                                    name=f"{name}_reshape")[0]
        return v

    # ------------------------------------------------------------------ emitting
    def emit(self, op: str, inputs: list[str], attrs: dict, hint: str) -> str:
        return self.graph.add_node(op, inputs, attrs, name=hint)[0]

    def emit_multi(self, op: str, inputs: list[str], attrs: dict, hint: str, n: int) -> list[str]:
        return self.graph.add_node(op, inputs, attrs, name=hint, num_outputs=n)

    # ------------------------------------------------------------------ nodes
    def convert_node(self, node: onnx.NodeProto, opset: int | None = None) -> None:
        """Convert one ONNX node: evaluate it at import if possible, else emit llmc ops."""
        opset = opset or self.opset
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(
                f"unsupported ONNX op '{node.domain}.{node.op_type}' (node '{node.name}', "
                f"opset {opset}): llmc supports only the default ONNX domain; file an "
                "issue or remove it")
        ctx = NodeCtx(self, node, opset)
        evaluate = EVALUATORS.get(node.op_type)
        if evaluate is not None:
            try:
                results = evaluate(ctx)
            except Exception:  # CannotEval, or a form the evaluator does not handle
                results = None
            if results is not None and all(
                    r is None or K.trackable(r.dtype, r.value.size) for r in results):
                for out, r in zip(node.output, results):
                    if out and r is not None:
                        self.known[out] = r
                return
        fn = CONVERTERS.get(node.op_type)
        if fn is None:
            self._expand_function(node, opset)
            return
        start = len(self.graph.nodes)
        try:
            results = fn(ctx)
        except LlmcError as exc:
            if str(exc).startswith(("ONNX", "unsupported ONNX")):
                raise
            raise type(exc)(f"ONNX {node.op_type} ({ctx.where()}): {exc}") from None
        except Exception as exc:
            raise FrontendError(f"ONNX {node.op_type} ({ctx.where()}) in {self.where} could not "
                                f"be converted: {type(exc).__name__}: {exc}") from exc
        self._bind(ctx, results, start)

    def _expand_function(self, node: onnx.NodeProto, opset: int) -> None:
        """Import an op without a converter through its ONNX function body, if it has one."""
        unsupported = (f"unsupported ONNX op '{node.op_type}' (node '{node.name}', opset {opset})"
                       f": llmc supports {len(supported_ops())} ONNX ops (llmc.frontends.onnx."
                       "supported_ops()); file an issue or remove it")
        types = [self.type_of(i) if i else None for i in node.input]
        found = onnx_functions.function_body(node, opset, types)
        if found is None:
            raise UnsupportedOpError(unsupported)
        body, body_opset = found
        self._fn_count += 1
        prefix = f"{node.name or node.op_type}__f{self._fn_count}__"
        nodes = onnx_functions.expand(node, body, prefix)
        if not nodes:
            raise UnsupportedOpError(unsupported)
        for n in nodes:
            self.used_names.update(i for i in n.input if i)
            for o in n.output:
                if o:
                    self.graph.fresh_name(o)
        try:
            for n in nodes:
                self.convert_node(n, body_opset)
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"{unsupported} (its ONNX function body needs: {exc})") \
                from None

    def _bind(self, ctx: NodeCtx, results: list, start: int) -> None:
        created = {o for n in self.graph.nodes[start:] for o in n.outputs}
        for i, out in enumerate(ctx.outputs):
            if not out:
                continue
            r = results[i] if i < len(results) else None
            if r is None:
                if out in self.used_names:
                    raise ctx.unsupported(f"output {i} ('{out}')")
                continue
            if isinstance(r, K.Known):
                self.known[out] = r
                continue
            if r in created and out not in self.graph.types and r not in self._bound:
                self._rename_value(r, out, start)
                r = out
            self._set_env(out, r)

    def _rename_value(self, old: str, new: str, start: int) -> None:
        for n in self.graph.nodes[start:]:
            n.outputs = [new if o == old else o for o in n.outputs]
            n.inputs = [new if i == old else i for i in n.inputs]
        self.graph.types[new] = self.graph.types.pop(old)


def _subgraph_reads(g: onnx.GraphProto) -> set[str]:
    out = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
    for n in g.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out |= _subgraph_reads(a.g)
    return out
