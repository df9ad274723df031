"""llmc Graph -> Relax IRModule: ``main(*inputs, *params)`` returning a tuple of outputs.

Each node becomes one PrimFunc (``BlockBuilder.emit_te`` of its lowering) called through
``call_tir``; every PrimFunc carries an ``llmc_kind`` attribute so the target's scheduler knows
what it is. Graph constants are parameters, not embedded, so the weights stay out of the
library. A matmul whose right operand is a 2-D float32 constant gets that weight pre-packed at
compile time into [N/32, K, 32] panels (the fast CPU recipe); the packed arrays replace the
original ones among the parameters, which is why :class:`RelaxModule` carries ``params``.
A ``fused`` node (the fuse pass) becomes ONE PrimFunc: its body's lowerings composed
(:func:`lowering.lower_fused`), tagged ``llmc_kind = "fused_<kind>"``; a body matmul whose
weight is a 2-D float32 constant reads the packed weight too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tvm import relax

from ..errors import BackendError
from ..ir import Graph, Node
from . import lowering as L


@dataclass
class RelaxModule:
    """The Relax module plus what the runtime needs to call it."""

    mod: object
    input_names: list[str]
    output_names: list[str]
    param_names: list[str]
    params: dict[str, np.ndarray]
    env: L.DimEnv
    kernels: list[str] = field(default_factory=list)


def _tensor_type(env: L.DimEnv, ty) -> relax.TensorType:
    return relax.TensorType(env.shape(ty.shape), ty.dtype)


def _packable(graph: Graph, node: Node, pack: bool) -> bool:
    if not pack or node.op != "matmul":
        return False
    a, b = node.inputs
    if b not in graph.constants:
        return False
    ta, tb = graph.types[a], graph.types[b]
    return tb.rank == 2 and tb.dtype == "float32" and ta.rank >= 2 and ta.dtype == "float32"


def _outer_of(node: Node) -> dict[str, str]:
    """A fused node's body input name -> the outer value it is bound to (by position)."""
    return dict(zip(node.attrs["body"].inputs, node.inputs))


def packed_reads(graph: Graph, node: Node, pack: bool = True) -> dict[str, str]:
    """Matmul node name -> outer constant that it reads as a pre-packed weight.

    A plain matmul reads its own ``inputs[1]``; a ``fused`` node's body matmuls whose weight
    is an outer 2-D float32 constant and whose activation is a body input are packed too.
    """
    if node.op != "fused":
        return {node.name: node.inputs[1]} if _packable(graph, node, pack) else {}
    if not pack:
        return {}
    body, outer = node.attrs["body"], _outer_of(node)
    out: dict[str, str] = {}
    for b in body.nodes:
        if b.op != "matmul" or b.inputs[0] not in outer or b.inputs[1] not in outer:
            continue
        a, w = outer[b.inputs[0]], outer[b.inputs[1]]
        ta, tw = graph.types[a], graph.types[w]
        if w in graph.constants and tw.rank == 2 and tw.dtype == "float32" and \
                ta.rank >= 2 and ta.dtype == "float32":
            out[b.name] = w
    return out


def _plain_reads(graph: Graph, node: Node, packed: dict[str, str]) -> set[str]:
    """Outer values ``node`` reads as they are (not as a packed weight)."""
    if node.op != "fused":
        return {i for j, i in enumerate(node.inputs) if i and not (packed and j == 1)}
    body, outer = node.attrs["body"], _outer_of(node)
    plain: set[str] = set()
    for b in body.nodes:
        for j, i in enumerate(b.inputs):
            if i in outer and not (b.name in packed and j == 1):
                plain.add(outer[i])
    return plain


def build_relax(graph: Graph, *, pack_weights: bool = True,
                small_dims: Sequence[str] = ()) -> RelaxModule:
    """Translate ``graph`` to a Relax module (unscheduled PrimFuncs tagged with their kind).

    ``small_dims``: symbols that stay small at run time (an LLM's batch); matmuls whose rows
    depend only on them are lowered as GEMVs (:data:`lowering.SMALL_ROWS`)."""
    token = L.SMALL_ROWS.set(frozenset(small_dims))
    try:
        return _build_relax(graph, pack_weights)
    finally:
        L.SMALL_ROWS.reset(token)


def _build_relax(graph: Graph, pack_weights: bool) -> RelaxModule:
    env = L.DimEnv()
    for name in graph.inputs:  # define symbols in input order (stable var creation)
        env.shape(graph.types[name].shape)
    consumers = graph.consumers()
    packed: dict[str, str] = {}
    reads = {n.name: packed_reads(graph, n, pack_weights) for n in graph.nodes}
    for n in graph.nodes:
        for w in reads[n.name].values():
            packed[w] = w + "__packed"
    params: dict[str, np.ndarray] = {}
    param_names: list[str] = []
    for c, arr in graph.constants.items():
        users = consumers.get(c, [])
        plain_use = any(c in _plain_reads(graph, u, reads[u.name]) for u in users) or \
            c in graph.outputs
        if c in packed:
            params[packed[c]] = L.pack_weight(arr)
            param_names.append(packed[c])
        if plain_use or (not users and c not in packed):
            params[c] = arr
            param_names.append(c)

    bb = relax.BlockBuilder()
    rin = [relax.Var(n, _tensor_type(env, graph.types[n])) for n in graph.inputs]
    rparam = [relax.Var(p, relax.TensorType(list(params[p].shape), _dtype(params[p])))
              for p in param_names]
    values: dict[str, relax.Expr] = dict(zip(graph.inputs, rin))
    values.update(zip(param_names, rparam))
    kernels: list[str] = []
    with bb.function("main", rin + rparam):
        with bb.dataflow():
            for node in graph.nodes:
                if node.op == "fused":
                    emit_fused(bb, graph, node, values, packed, reads[node.name], env,
                                kernels)
                else:
                    emit_node(bb, graph, node, values, packed, env, kernels)
            outs = [values[o] for o in graph.outputs]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    return RelaxModule(bb.get(), list(graph.inputs), list(graph.outputs), param_names, params,
                       env, kernels)


def _dtype(arr: np.ndarray) -> str:
    from ..dtypes import from_numpy
    return from_numpy(arr.dtype)


def emit_node(bb: relax.BlockBuilder, graph: Graph, node: Node, values: dict,
              packed: dict, env: L.DimEnv, kernels: list) -> None:
    """Bind one plain node's outputs in ``values``: its PrimFunc (or a packed-weight matmul).

    Public so that backends that intercept some nodes (systolic) lower the rest the same way.
    """
    out_types = [graph.types[o] for o in node.outputs]
    hint = _ident(node.name or node.op)
    if node.op == "matmul" and node.inputs[1] in packed and _packable(graph, node, True):
        a = values[node.inputs[0]]
        ta = graph.types[node.inputs[0]]
        K = graph.types[node.inputs[1]].shape[0]
        N = graph.types[node.inputs[1]].shape[1]
        m = env.prim(1)
        for d in ta.shape[:-1]:
            m = m * env.prim(d)
        if ta.rank != 2:
            a = bb.emit(relax.op.reshape(a, [m, env.prim(K)]))
        wp = values[packed[node.inputs[1]]]
        y = bb.emit_te(lambda x, w: L.matmul_packed(x, w, int(N)), a, wp,
                       primfunc_name_hint=hint, primfunc_attrs={"llmc_kind": "matmul_packed"})
        kernels.append(hint)
        if ta.rank != 2:
            y = bb.emit(relax.op.reshape(y, env.shape(out_types[0].shape)))
        values[node.outputs[0]] = y
        return
    if node.op == "kv_cache_write":  # writes the caches in place (backends/kv_cache.py)
        from .kv_cache import emit_kv_cache_write
        kc, _vc, kr, _vr = (graph.types[i] for i in node.inputs)
        y = emit_kv_cache_write(bb, hint, *(values[i] for i in node.inputs),
                                env.prim(node.attrs["offset"]), int(kc.shape[1]),
                                int(kc.shape[3]), kc.dtype, kr.dtype,
                                _tensor_type(env, out_types[0]))
        kernels.append(hint)
        _bind_outputs(bb, node, y, values)
        return
    if node.op in _VIEW_OPS and graph.types[node.inputs[0]].dtype == out_types[0].dtype:
        # a reshape of a contiguous tensor is a view in the VM: no kernel, no copy
        values[node.outputs[0]] = bb.emit(relax.op.reshape(values[node.inputs[0]],
                                                           env.shape(out_types[0].shape)))
        return
    low = L.get_lowering(node)
    args = [values[i] for i in node.inputs if i]
    present = [bool(i) for i in node.inputs]
    names = sorted(_symbols_of(node, out_types))

    def te_fn(*tensors):
        # emit_te hands the PrimFunc its own copies of the symbolic vars (consistent with the
        # input placeholders' shapes): build the lowering's DimEnv from them
        local = L.DimEnv()
        if names:
            local.vars.update(zip(names, tensors[-1]))
            tensors = tensors[:-1]
        ctx = L.LowerCtx(node, out_types, local)
        it = iter(tensors)
        ins = [next(it) if p else None for p in present]
        # trailing omitted inputs are dropped so lowerings can use len(ins)
        while ins and ins[-1] is None:
            ins.pop()
        outs = low.fn(ins, dict(node.attrs), ctx)
        return outs[0] if len(outs) == 1 else list(outs)
    try:
        extra = [[env.var(n) for n in names]] if names else []
        y = bb.emit_te(te_fn, *args, *extra, primfunc_name_hint=hint,
                       primfunc_attrs={"llmc_kind": low.kind})
    except BackendError:
        raise
    except Exception as exc:  # TVM errors: name op and node
        raise BackendError(f"node {node.name!r} ({node.op}): lowering to TVM failed: "
                           f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
                           ) from exc
    kernels.append(hint)
    _bind_outputs(bb, node, y, values)


def _bind_outputs(bb: relax.BlockBuilder, node: Node, y, values: dict) -> None:
    """Record a call's result under the node's output names (tuple items for several)."""
    if len(node.outputs) == 1:
        values[node.outputs[0]] = y
    else:
        for i, o in enumerate(node.outputs):
            values[o] = bb.emit(relax.TupleGetItem(y, i))


def emit_fused(bb: relax.BlockBuilder, graph: Graph, node: Node, values: dict,
               packed: dict, reads: dict[str, str], env: L.DimEnv, kernels: list) -> None:
    """One PrimFunc for a whole fused group (kind ``fused_<kind>`` for the scheduler).

    A body matmul with a packed weight gets its activation as a 2-D view ([rows, K], a free
    reshape in the VM) and the packed panels; every other body input is passed as it is.
    """
    body = node.attrs["body"]
    kind = node.attrs["kind"]
    outer = _outer_of(node)
    hint = _ident(node.name)
    plain = [b for b in body.inputs
             if any(i == b and not (bn.name in reads and j == 1)
                    for bn in body.nodes for j, i in enumerate(bn.inputs))]
    args = [values[outer[b]] for b in plain]
    pk: list[tuple[str, int]] = []   # (matmul node name, N)
    for bn in body.nodes:
        if bn.name not in reads:
            continue
        a_name, w_name = bn.inputs
        ta = body.types[a_name]
        K, N = graph.types[reads[bn.name]].shape
        a = values[outer[a_name]]
        if ta.rank != 2:
            m = env.prim(1)
            for d in ta.shape[:-1]:
                m = m * env.prim(d)
            a = bb.emit(relax.op.reshape(a, [m, env.prim(K)]))
        args += [a, values[packed[reads[bn.name]]]]
        pk.append((bn.name, int(N)))
    if kind == "matmul_epilogue" and not pk:
        kind = "elementwise_matmul"  # weight not packed: generic matmul + epilogue
    names = sorted(_body_symbols(body))

    def te_fn(*tensors):
        local = L.DimEnv()
        if names:
            local.vars.update(zip(names, tensors[-1]))
            tensors = tensors[:-1]
        ins = dict(zip(plain, tensors[:len(plain)]))
        rest = tensors[len(plain):]
        mm = {name: (rest[2 * i], rest[2 * i + 1], n) for i, (name, n) in enumerate(pk)}
        outs = L.lower_fused(body, ins, local, mm)
        return outs[0] if len(outs) == 1 else list(outs)
    try:
        extra = [[env.var(n) for n in names]] if names else []
        y = bb.emit_te(te_fn, *args, *extra, primfunc_name_hint=hint,
                       primfunc_attrs={"llmc_kind": f"fused_{kind}"})
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"node {node.name!r} (fused {kind}: "
                           f"{', '.join(b.op for b in body.nodes)}): lowering to TVM failed: "
                           f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300]}"
                           ) from exc
    kernels.append(hint)
    _bind_outputs(bb, node, y, values)


def _body_symbols(body: Graph) -> set[str]:
    """Symbol names in a fused body's value types and node attributes."""
    found: set[str] = set()
    for ty in body.types.values():
        for d in ty.shape:
            found |= _dim_symbols(d)
    for bn in body.nodes:
        found |= _symbols_of(bn, [])
    return found


def _dim_symbols(d) -> set[str]:
    from .. import dims as D
    return D.symbols(d)


_VIEW_OPS = ("reshape", "squeeze", "unsqueeze", "identity")


def _symbols_of(node: Node, out_types) -> set[str]:
    """Symbol names that a node's output shapes and attributes mention."""
    from .. import dims as D

    found: set[str] = set()
    for t in out_types:
        for d in t.shape:
            found |= D.symbols(d)

    def walk(v):
        if isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif hasattr(v, "free_symbols") and not isinstance(v, (int, float, str)):
            found.update(str(s) for s in v.free_symbols)
    for v in node.attrs.values():
        walk(v)
    return found


def _ident(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else "k_" + out
