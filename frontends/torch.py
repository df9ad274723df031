"""PyTorch frontend: ``torch.export`` -> core ATen -> llmc's graph IR.

``import_torch`` exports an ``nn.Module`` (or takes an ``ExportedProgram``), decomposes it to
core ATen while keeping the composite ops llmc has a better op for (scaled dot-product
attention, SiLU, RMSNorm, ...), then walks the FX graph once and emits llmc ops through a table
of small per-op handlers (:mod:`llmc.frontends.torch_ops`). Parameters, buffers and lifted
constants become graph constants; user inputs become graph inputs whose symbolic dims are named
after the ``torch.export.Dim`` objects the caller used (``batch``, ``seq``), so the compiled
model's signature reads the same as the PyTorch code that made it.
"""
from __future__ import annotations

import inspect
import operator
from typing import Any, Mapping, Sequence

import numpy as np
import sympy

import torch
import torch.fx

from .. import dims as D
from ..errors import FrontendError, ShapeError, UnsupportedOpError, VerificationError
from ..ir import Graph

__all__ = ["import_torch", "export_program", "decompose", "supported_ops", "torch_dtype_name"]

# Composite ops that default decompositions would break into many small ops although llmc
# has a single op (or a cleaner pattern) for them; they are removed from the decomposition table.
_KEEP_COMPOSITE = (
    "scaled_dot_product_attention.default",
    "silu.default",
    "hardswish.default",
    "hardsigmoid.default",
    "mish.default",
    "softplus.default",
    "rms_norm.default",
    "_fused_rms_norm.default",
    "tril.default",
    "triu.default",
    "celu.default",
    "selu.default",
    "adaptive_avg_pool2d.default",  # -> global_avg_pool (1x1) instead of a mean over H, W
    "reflection_pad1d.default",  # -> pad(mode=reflect) instead of index arithmetic
    "reflection_pad2d.default",
    "reflection_pad3d.default",
    "replication_pad1d.default",
    "replication_pad2d.default",
    "replication_pad3d.default",
)

# ATen ops with no data effect in an inference graph (runtime checks); dropped on import.
_DROP = frozenset({
    "aten._assert_tensor_metadata.default",
    "aten._assert_scalar.default",
    "aten._assert_async.default",
    "aten._assert_async.msg",
    "aten.sym_constrain_range.default",
    "aten.sym_constrain_range_for_size.default",
    "aten._functional_assert_async.msg",
    "aten._functional_sym_constrain_range.default",
    "aten._functional_sym_constrain_range_for_size.default",
})

_TORCH_DTYPES = {
    torch.bool: "bool", torch.int8: "int8", torch.int16: "int16", torch.int32: "int32",
    torch.int64: "int64", torch.uint8: "uint8", torch.uint16: "uint16", torch.uint32: "uint32",
    torch.uint64: "uint64", torch.float16: "float16", torch.bfloat16: "bfloat16",
    torch.float32: "float32", torch.float64: "float64",
}


def torch_dtype_name(dtype: torch.dtype) -> str:
    """The llmc dtype name of a torch dtype (FrontendError for complex, quantized, fp8...)."""
    try:
        return _TORCH_DTYPES[dtype]
    except KeyError:
        raise UnsupportedOpError(f"torch dtype {dtype} has no llmc equivalent; llmc supports "
                                 f"{', '.join(sorted(set(_TORCH_DTYPES.values())))}") from None


# ----------------------------------------------------------------------------- export
def export_program(model: torch.nn.Module, example_inputs: tuple,
                   dynamic_shapes: Any = None) -> torch.export.ExportedProgram:
    """``torch.export.export`` in eval mode, with export failures turned into FrontendError."""
    if example_inputs is None:
        raise FrontendError("import_torch needs example_inputs to export an nn.Module "
                            "(a tuple of tensors with the shapes the model is called with)")
    if not isinstance(example_inputs, tuple):
        example_inputs = tuple(example_inputs) if isinstance(example_inputs, list) \
            else (example_inputs,)
    model = model.eval()
    try:
        with torch.no_grad():
            return torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # torch raises many types; the user needs the message
        hint = ("; hint: a dynamic dim whose example size is 0 or 1 gets specialized: use "
                "example sizes >= 2 for dims marked with torch.export.Dim") \
            if "specializ" in str(exc) or "Constraints violated" in str(exc) else ""
        raise FrontendError(f"torch.export.export failed for {type(model).__name__}: "
                            f"{type(exc).__name__}: {str(exc).strip()[:2000]}{hint}") from exc


def decompose(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Decompose to core ATen, keeping the composite ops in ``_KEEP_COMPOSITE``."""
    table = torch.export.default_decompositions()
    for name in _KEEP_COMPOSITE:
        packet, overload = name.split(".")
        op = getattr(getattr(torch.ops.aten, packet, None), overload, None)
        if op is not None:
            table.pop(op, None)
    try:
        return ep.run_decompositions(table)
    except Exception as exc:
        raise FrontendError(f"decomposing the exported program to core ATen failed: "
                            f"{type(exc).__name__}: {exc}") from exc


def supported_ops() -> list[str]:
    """Names of the ATen ops (``aten.name.overload`` or ``aten.name``) the frontend maps."""
    from .torch_ops import HANDLERS

    return sorted(HANDLERS)


# ----------------------------------------------------------------------------- symbols
_SYMPY_FUNCS = {
    "FloorDiv": lambda a, b: sympy.floor(a / b),
    "CeilDiv": lambda a, b: sympy.ceiling(a / b),
    "CleanDiv": lambda a, b: a / b,
    "IntTrueDiv": lambda a, b: a / b,
    "FloatTrueDiv": lambda a, b: a / b,
    "PythonMod": sympy.Mod,
    "Mod": sympy.Mod,
    "ModularIndexing": lambda a, b, c: sympy.Mod(sympy.floor(a / b), c),
    "Max": sympy.Max,
    "Min": sympy.Min,
    "FloorToInt": sympy.floor,
    "CeilToInt": sympy.ceiling,
    "TruncToInt": lambda a: sympy.sign(a) * sympy.floor(sympy.Abs(a)),
    "Identity": lambda a: a,
    "PowByNatural": lambda a, b: a ** b,
    "floor": sympy.floor,
    "ceiling": sympy.ceiling,
}


def _dim_names_from_spec(ep: torch.export.ExportedProgram, dynamic_shapes: Any,
                         forward: Any) -> dict[str, str]:
    """torch symbol name -> the user's ``torch.export.Dim`` name, where it can be recovered."""
    if dynamic_shapes is None:
        return {}
    user = [s.arg.name for s in ep.graph_signature.input_specs
            if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    specs: list[tuple[str, Any]] = []
    if isinstance(dynamic_shapes, Mapping):
        order = list(dynamic_shapes)
        if forward is not None:
            try:
                params = list(inspect.signature(forward).parameters)
                order = sorted(order, key=lambda k: params.index(k) if k in params else 1 << 30)
            except (TypeError, ValueError):
                pass
        if all(k in placeholders for k in order):
            specs = [(k, dynamic_shapes[k]) for k in order]
        else:
            specs = list(zip(user, (dynamic_shapes[k] for k in order)))
    elif isinstance(dynamic_shapes, (tuple, list)):
        specs = list(zip(user, dynamic_shapes))
    names: dict[str, str] = {}
    for ph_name, spec in specs:
        node = placeholders.get(ph_name)
        val = node.meta.get("val") if node is not None else None
        if val is None or spec is None or not hasattr(val, "shape"):
            continue
        items = spec.items() if isinstance(spec, Mapping) else enumerate(spec) \
            if isinstance(spec, (tuple, list)) else ()
        for axis, dim_obj in items:
            name = getattr(dim_obj, "__name__", None)
            if not isinstance(name, str) or not name.isidentifier() or \
                    type(dim_obj).__name__ != "Dim" or not 0 <= axis < val.dim():
                continue
            size = val.shape[axis]
            if isinstance(size, torch.SymInt):
                expr = size.node.expr
                if isinstance(expr, sympy.Symbol):
                    names.setdefault(str(expr), name)
    return names


# ----------------------------------------------------------------------------- converter
class Converter:
    """One FX graph -> one llmc Graph; handlers in torch_ops call back into this object."""

    def __init__(self, ep: torch.export.ExportedProgram, dim_names: Mapping[str, str],
                 input_names: Sequence[str] | None, output_names: Sequence[str] | None,
                 name: str) -> None:
        self.ep = ep
        self.graph = Graph(name)
        self.env: dict[torch.fx.Node, Any] = {}
        self.dim_names = dict(dim_names)
        self.input_names = list(input_names) if input_names is not None else None
        self.output_names = list(output_names) if output_names is not None else None
        self.node: torch.fx.Node | None = None  # the FX node being converted
        self._scalars: dict[tuple, str] = {}
        self._casts: dict[tuple[str, str], str] = {}
        self._sym_cache: dict[sympy.Basic, D.Dim] = {}

    # ------------------------------------------------------------------ dims
    def sym_expr(self, expr: sympy.Basic) -> D.Dim:
        """A torch sympy expression (over s0, s1, ...) as an llmc Dim over the user's names."""
        if expr in self._sym_cache:
            return self._sym_cache[expr]
        def conv(e: sympy.Basic) -> sympy.Basic:
            if isinstance(e, sympy.Symbol):
                if e.name.startswith("u"):  # torch's unbacked (data-dependent) symbols
                    raise UnsupportedOpError(
                        f"torch frontend: a shape depends on tensor data ({e}){self._where()}; "
                        "llmc needs shapes that follow from the input shapes")
                return D.sym(self.dim_names.get(e.name, e.name))
            if e.is_Integer:
                return sympy.Integer(int(e))
            if e.is_Number:
                return e
            args = [conv(a) for a in e.args]
            fname = type(e).__name__
            if fname in _SYMPY_FUNCS:
                return _SYMPY_FUNCS[fname](*args)
            if isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow)):
                return e.func(*args)
            raise UnsupportedOpError(f"symbolic shape expression {e} uses {fname}, which llmc's "
                                     f"torch frontend cannot translate{self._where()}")
        out = D.dim(conv(sympy.sympify(expr)))
        self._sym_cache[expr] = out
        return out

    def dim(self, value: Any) -> D.Dim:
        """An int, SymInt or FX node holding one as an llmc Dim."""
        if isinstance(value, torch.fx.Node):
            value = self.env[value]
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, torch.SymInt):
            hint = value.node.maybe_as_int() if hasattr(value.node, "maybe_as_int") else None
            if hint is not None:
                return int(hint)
            return self.sym_expr(value.node.expr)
        if isinstance(value, (sympy.Basic, np.integer)):
            return D.dim(value)
        raise FrontendError(f"expected an integer or symbolic size, got {value!r}{self._where()}")

    def shape_of(self, val: Any) -> tuple:
        """The llmc shape of a torch (fake) tensor."""
        return tuple(self.dim(s) for s in val.shape)

    # ------------------------------------------------------------------ meta
    def meta(self, node: torch.fx.Node | None = None) -> Any:
        """torch's value metadata (a FakeTensor, a tuple of them, or a SymInt) of a node."""
        node = node or self.node
        val = node.meta.get("val")
        if val is None:
            raise FrontendError(f"FX node {node.name!r} has no 'val' metadata; import an "
                                "ExportedProgram made by torch.export")
        return val

    def out_dtype(self, index: int | None = None) -> str:
        """The dtype torch gives the current node's result (``index`` for multi-output ops)."""
        val = self.meta()
        if index is not None:
            val = val[index]
        return torch_dtype_name(val.dtype)

    def out_shape(self, index: int | None = None) -> tuple:
        """The shape torch gives the current node's result, as llmc dims."""
        val = self.meta()
        if index is not None:
            val = val[index]
        return self.shape_of(val)

    # ------------------------------------------------------------------ values
    def is_tensor(self, arg: Any) -> bool:
        """Whether an argument is an FX node already converted to an llmc tensor value."""
        return isinstance(arg, torch.fx.Node) and isinstance(self.env.get(arg), str)

    def dtype(self, name: str) -> str:
        """dtype of an llmc value."""
        return self.graph.types[name].dtype

    def shape(self, name: str) -> tuple:
        """Shape of an llmc value."""
        return self.graph.types[name].shape

    def rank(self, name: str) -> int:
        """Rank of an llmc value."""
        return self.graph.types[name].rank

    def scalar_dtype(self, arg: Any) -> str:
        """The dtype torch gives a tensor or a Python/Sym scalar standing alone."""
        if self.is_tensor(arg):
            return self.dtype(self.env[arg])
        if isinstance(arg, torch.fx.Node):
            arg = self.env[arg]
        if isinstance(arg, (bool, torch.SymBool)):
            return "bool"
        if isinstance(arg, (int, torch.SymInt)):
            return "int64"
        return "float32"

    def tensor(self, arg: Any, dtype: str | None = None) -> str:
        """The llmc value for a tensor argument; scalars become 0-d constants (or dims_tensor)."""
        if isinstance(arg, torch.fx.Node):
            val = self.env.get(arg)
            if isinstance(val, str):
                return self.cast(val, dtype) if dtype else val
            if isinstance(val, list):
                raise FrontendError(f"FX node {arg.name!r} makes several tensors; one was "
                                    f"expected{self._where()}")
            arg = val
        if isinstance(arg, (torch.SymInt, sympy.Basic)) and not isinstance(self.dim(arg), int):
            d = self.dim(arg)
            t = self.emit("dims_tensor", [], {"values": [d], "dtype": "int64"})
            t = self.emit("reshape", [t], {"shape": []})
            return self.cast(t, dtype) if dtype else t
        if isinstance(arg, torch.SymInt):
            arg = self.dim(arg)
        if isinstance(arg, torch.SymFloat):
            raise UnsupportedOpError(f"symbolic float scalars are not supported{self._where()}")
        if isinstance(arg, torch.SymBool):
            raise UnsupportedOpError(f"symbolic bool scalars are not supported{self._where()}")
        if isinstance(arg, (bool, int, float)):
            return self.scalar(arg, dtype or self.scalar_dtype(arg))
        raise FrontendError(f"expected a tensor argument, got {arg!r}{self._where()}")

    def scalar(self, value: float | int | bool, dtype: str) -> str:
        """A shared 0-d constant."""
        from ..dtypes import to_numpy

        key = (dtype, repr(value))
        if key not in self._scalars:
            arr = np.array(value).astype(to_numpy(dtype))
            self._scalars[key] = self.graph.add_constant(arr, "scalar")
        return self._scalars[key]

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        """Add a constant array (kept C-contiguous and 0-d where it is 0-d)."""
        array = np.asarray(array)
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
            array = array.copy(order="C")
        return self.graph.add_constant(array, hint)

    def cast(self, name: str, dtype: str | None) -> str:
        """``name`` as ``dtype`` (a cast node when it differs; constants are cast at import)."""
        if dtype is None or self.dtype(name) == dtype:
            return name
        key = (name, dtype)
        if key not in self._casts:
            if name in self.graph.constants and self.graph.constants[name].size <= 1 << 16:
                from ..dtypes import to_numpy

                arr = self.graph.constants[name].astype(to_numpy(dtype))
                self._casts[key] = self.const(arr, name + "_" + dtype)
            else:
                self._casts[key] = self.emit("cast", [name], {"to": dtype})
        return self._casts[key]

    def emit(self, op: str, inputs: Sequence[str], attrs: Mapping[str, Any] | None = None,
             num_outputs: int | None = None) -> Any:
        """Add one llmc node named after the current FX node; returns its output (or list)."""
        hint = self.node.name if self.node is not None else op
        try:
            outs = self.graph.add_node(op, list(inputs), attrs or {}, name=hint,
                                       num_outputs=num_outputs)
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"{exc}{self._where()}") from None
        except ShapeError as exc:
            raise ShapeError(f"{exc}{self._where()}") from None
        return outs[0] if len(outs) == 1 and num_outputs is None else outs

    # ------------------------------------------------------------------ errors
    def _where(self) -> str:
        if self.node is None:
            return ""
        text = f" (FX node {self.node.name!r}, {self.node.target})"
        trace = self.node.meta.get("stack_trace")
        if trace:
            lines = [ln.strip() for ln in str(trace).strip().splitlines() if ln.strip()]
            files = [ln for ln in lines if ln.startswith("File ")]
            if files:
                text += f" from {files[-1]}"
        return text

    def unsupported(self, why: str) -> UnsupportedOpError:
        """An error naming the op, the node and what to do."""
        return UnsupportedOpError(
            f"torch frontend: {self.node.target if self.node is not None else '?'} {why}"
            f"{self._where()}; hint: rewrite that part of the model, or export it to ONNX and "
            "import it with llmc.frontends.onnx")

    # ------------------------------------------------------------------ the walk
    def run(self) -> Graph:
        from .torch_ops import lookup

        sig = self.ep.graph_signature
        kinds = {s.arg.name: s for s in sig.input_specs}
        state = self.ep.state_dict
        consts = self.ep.constants
        user_i = 0
        placeholders = {n.name: n for n in self.ep.graph.nodes if n.op == "placeholder"}
        user_placeholders = [s.arg.name for s in sig.input_specs
                             if s.kind == torch.export.graph_signature.InputKind.USER_INPUT
                             and isinstance(placeholders[s.arg.name].meta.get("val"),
                                            torch.Tensor)]
        if self.input_names is not None and len(self.input_names) != len(user_placeholders):
            raise FrontendError(f"input_names has {len(self.input_names)} names but the model "
                                f"takes {len(user_placeholders)} tensor inputs "
                                f"({', '.join(user_placeholders)})")
        output_node = None
        for node in self.ep.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                spec = kinds.get(node.name)
                kind = spec.kind if spec is not None else None
                IK = torch.export.graph_signature.InputKind
                if kind == IK.USER_INPUT:
                    val = self.meta(node)
                    if not isinstance(val, torch.Tensor):
                        # a non-tensor user input (int, float) that export kept as a constant
                        self.env[node] = val
                        continue
                    name = self.input_names[user_i] if self.input_names else node.name
                    user_i += 1
                    self.env[node] = self.graph.add_input(name, torch_dtype_name(val.dtype),
                                                          self.shape_of(val))
                elif kind in (IK.PARAMETER, IK.BUFFER, IK.CONSTANT_TENSOR):
                    target = spec.target
                    tensor = state[target] if target in state else consts.get(target)
                    if tensor is None:
                        raise FrontendError(f"exported program has no value for {kind.name} "
                                            f"{target!r} (placeholder {node.name!r})")
                    if not isinstance(tensor, torch.Tensor):
                        raise self.unsupported(f"constant {target!r} of type "
                                               f"{type(tensor).__name__} is not a tensor")
                    self.env[node] = self.const(tensor_to_numpy(tensor), target)
                else:
                    raise self.unsupported(f"input {node.name!r} of kind "
                                           f"{getattr(kind, 'name', kind)} is not supported")
            elif node.op == "call_function":
                self._call(node, lookup)
            elif node.op == "output":
                output_node = node
            else:
                raise self.unsupported(f"FX node kind {node.op!r} is not supported "
                                       "(control flow or submodules)")
        self.node = None
        assert output_node is not None
        self._set_outputs(output_node)
        _prune(self.graph)
        self.graph.verify()
        return self.graph

    def _call(self, node: torch.fx.Node, lookup: Any) -> None:
        target = node.target
        tname = str(target)
        if tname in _DROP:
            return
        if target is operator.getitem:
            src, idx = node.args
            val = self.env[src]
            if not isinstance(val, (list, tuple)):
                raise self.unsupported("getitem on a single value")
            if val[idx] is None:
                raise self.unsupported(f"uses output {idx}, which llmc does not compute")
            self.env[node] = val[idx]
            return
        val = node.meta.get("val")
        if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool, int, float, bool)):
            # shape arithmetic (sym_size, operator.mul, ...): exact in the node's metadata
            self.env[node] = val
            return
        handler = lookup(target)
        if handler is None:
            raise UnsupportedOpError(
                f"torch frontend: ATen op {tname} is not supported{self._where()}; hint: "
                "llmc.frontends.torch.supported_ops() lists the supported ops; rewrite that "
                "part of the model, or export it to ONNX and use llmc.frontends.onnx")
        args = bind_args(node)
        result = handler(self, args)
        self.env[node] = self._check(result)

    def _check(self, result: Any) -> Any:
        """Match the handler's result to torch's metadata: cast dtypes, reject wrong shapes."""
        val = self.meta()
        if isinstance(result, (list, tuple)):
            vals = list(val) if isinstance(val, (list, tuple)) else [val]
            return [self._check_one(r, v) if r is not None else None
                    for r, v in zip(result, vals)] + [None] * (len(vals) - len(result))
        return self._check_one(result, val)

    def _check_one(self, name: str, val: Any) -> str:
        if not isinstance(val, torch.Tensor):
            return name
        want = torch_dtype_name(val.dtype)
        name = self.cast(name, want)
        have = self.shape(name)
        expect = self.shape_of(val)
        if len(have) != len(expect) or not all(
                a == b or self._same_dim(a, b) for a, b in zip(have, expect)):
            raise VerificationError(f"torch frontend made {D.shape_str(have)} where torch has "
                                    f"{D.shape_str(expect)}{self._where()} (a frontend bug)")
        return name

    def _same_dim(self, a: D.Dim, b: D.Dim) -> bool:
        """Equal dims, allowing for what sympy cannot prove without torch's value ranges
        (llmc's ``Max(0, seq - 2)`` is torch's ``seq - 2`` when seq >= 4): compared at
        sample points inside the export's range constraints."""
        if D.equal(a, b):
            return True
        names = sorted(D.symbols(a) | D.symbols(b))
        if not names:
            return False
        ranges = self.sym_ranges()
        for k in range(4):
            point = {}
            for i, n in enumerate(names):
                lo, hi = ranges.get(n, (2, 1 << 20))
                point[n] = min(hi, lo + (0, 1, 5 + i, 17 + 3 * i)[k])
            try:
                if D.evaluate(a, point) != D.evaluate(b, point):
                    return False
            except Exception:  # non-integer at a sample point: not provably equal
                return False
        return True

    def sym_ranges(self) -> dict[str, tuple[int, int]]:
        """llmc symbol name -> (min, max) from the export's range constraints."""
        if getattr(self, "_ranges", None) is None:
            self._ranges = {}
            for sym, vr in self.ep.range_constraints.items():
                if isinstance(sym, sympy.Symbol):
                    try:
                        lo = int(vr.lower)
                    except (TypeError, ValueError):
                        lo = 2
                    try:
                        hi = int(vr.upper)
                    except (TypeError, ValueError):
                        hi = 1 << 20
                    self._ranges[self.dim_names.get(sym.name, sym.name)] = (max(lo, 0), hi)
        return self._ranges

    def _set_outputs(self, node: torch.fx.Node) -> None:
        outs = node.args[0]
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        names = self.output_names or [f"output_{i}" for i in range(len(outs))]
        if len(names) != len(outs):
            raise FrontendError(f"output_names has {len(names)} names but the model returns "
                                f"{len(outs)} tensors")
        final = []
        producers = self.graph.producers()
        taken: set[str] = set()
        for arg, want in zip(outs, names):
            value = self.tensor(arg) if isinstance(arg, torch.fx.Node) else self.tensor(arg)
            if want in self.graph.types and want != value:
                raise FrontendError(f"output name {want!r} is already used by another value")
            if value == want:
                final.append(value)
            elif value in producers and value not in taken and value not in self.graph.outputs:
                _rename_value(self.graph, value, want)
                producers = self.graph.producers()
                final.append(want)
            else:  # a graph input, a constant, or a value returned twice
                self.node = None
                final.append(self.graph.add_node("identity", [value], {}, name=want,
                                                 outputs=[want])[0])
            taken.add(final[-1])
        self.graph.set_outputs(final)


def _prune(g: Graph) -> None:
    """Drop nodes and constants no output depends on (unused parameters, superseded casts)."""
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(i for i in n.inputs if i)
    g.nodes = kept[::-1]
    for name in [c for c in g.constants if c not in live]:
        del g.constants[name]
        del g.types[name]
    for name in [v for v in g.types if v not in live and v not in g.inputs]:
        del g.types[name]


def _rename_value(g: Graph, old: str, new: str) -> None:
    """Rename a node-produced value everywhere (outputs, types, readers)."""
    for n in g.nodes:
        n.outputs = [new if o == old else o for o in n.outputs]
        n.inputs = [new if i == old else i for i in n.inputs]
    g.types[new] = g.types.pop(old)
    g._used.add(new)


def tensor_to_numpy(t: torch.Tensor) -> np.ndarray:
    """A numpy copy of a tensor (bfloat16 through ml_dtypes)."""
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    torch_dtype_name(t.dtype)
    return t.numpy().copy()


def bind_args(node: torch.fx.Node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in (handlers read ``a['self']``)."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:
        return {f"arg{i}": a for i, a in enumerate(node.args)} | dict(node.kwargs)
    out: dict[str, Any] = {}
    params = schema.arguments
    for p, a in zip(params, node.args):
        out[p.name] = a
    for p in params[len(node.args):]:
        if p.name in node.kwargs:
            out[p.name] = node.kwargs[p.name]
        elif p.has_default_value():
            out[p.name] = p.default_value
        else:
            out[p.name] = None
    for k, v in node.kwargs.items():
        out.setdefault(k, v)
    return out


# ----------------------------------------------------------------------------- entry point
def import_torch(model: torch.nn.Module | torch.export.ExportedProgram,
                 example_inputs: tuple | None = None, *, dynamic_shapes: Any = None,
                 input_names: list[str] | None = None,
                 output_names: list[str] | None = None) -> Graph:
    """Import a PyTorch model as an llmc Graph (via torch.export and core ATen).

    ``dynamic_shapes`` is torch.export's argument (``{0: Dim("batch"), 1: Dim("seq")}`` per
    input); the graph's symbolic dims take the ``Dim`` names. An ExportedProgram is used as is
    (``dynamic_shapes`` then only names its symbols). Inputs are named ``input_names`` or the
    forward argument names; outputs ``output_names`` or ``output_0``, ``output_1``, ...
    """
    if isinstance(model, torch.export.ExportedProgram):
        ep = model
        forward = None
        name = "model"
    elif isinstance(model, torch.nn.Module):
        ep = export_program(model, example_inputs, dynamic_shapes)
        forward = model.forward
        name = type(model).__name__
    else:
        raise FrontendError(f"import_torch takes an nn.Module or an ExportedProgram, not "
                            f"{type(model).__name__}")
    dim_names = _dim_names_from_spec(ep, dynamic_shapes, forward)
    ep = decompose(ep)
    # decomposition re-traces; symbols keep their names, but re-read the spec to be safe
    dim_names.update({k: v for k, v in _dim_names_from_spec(ep, dynamic_shapes, forward).items()
                      if k not in dim_names})
    return Converter(ep, dim_names, input_names, output_names, name).run()
