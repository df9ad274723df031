"""Constant folding: evaluate at compile time every node whose inputs are all constants.

Weights transformed by the exporter (a transpose of a weight, a reshape, a cast, a scale)
become one stored constant, and shape subgraphs whose values are static (``dims_tensor``,
``range``, ``full`` with static dims) become literals. The op's numpy reference computes the
value, so folding is exactly what the interpreter would have done at run time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from llmc.dtypes import to_numpy
from llmc.ir import Graph, Node
from llmc.ops import get_op

from .manager import register_pass
from .rewrite import add_constant_as, use_counts

#: Results larger than this are not folded unless they replace at least as many bytes.
MAX_FOLD_BYTES = 64 * 1024 * 1024


def _has_symbols(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has_symbols(v) for v in value)
    if isinstance(value, dict):
        return any(_has_symbols(v) for v in value.values())
    return hasattr(value, "free_symbols") and not isinstance(value, (int, float, str, bool))


def _out_bytes(graph: Graph, node: Node) -> int | None:
    total = 0
    for o in node.outputs:
        ty = graph.types[o]
        if not ty.is_static:
            return None
        total += int(np.prod(ty.shape, dtype=np.int64)) * to_numpy(ty.dtype).itemsize
    return total


def try_fold(graph: Graph, node: Node, uses: dict[str, int]) -> list[np.ndarray] | None:
    """The node's results as arrays if it can and should be folded, else None."""
    ins = [i for i in node.inputs if i]
    if any(i not in graph.constants for i in ins):
        return None
    if _has_symbols(node.attrs):
        return None
    size = _out_bytes(graph, node)
    if size is None:
        return None
    if size > MAX_FOLD_BYTES:
        # only worth it when the inputs it consumes (read by nothing else) are bigger
        freed = sum(graph.constants[i].nbytes for i in set(ins) if uses.get(i, 0) <= 1)
        if size > freed:
            return None
    args = [graph.constants[i] if i else None for i in node.inputs]
    try:
        outs = get_op(node.op).reference(args, dict(node.attrs))
    except Exception:  # noqa: BLE001 - an error here belongs to run time, not compile time
        return None
    if len(outs) != len(node.outputs):
        return None
    result = []
    for o, arr in zip(node.outputs, outs):
        arr = np.asarray(arr)
        ty = graph.types[o]
        if arr.dtype != to_numpy(ty.dtype) or tuple(arr.shape) != tuple(ty.shape):
            return None
        result.append(arr)
    return result


# ------------------------------------------------------------ symbolic shape values
_SYM_MAX = 64  # elements: shape tensors are short
_SYM_OPS = {"concat", "gather", "unsqueeze", "squeeze", "reshape", "slice", "add", "sub", "mul",
            "cast", "identity", "expand"}


def _sym_source(graph: Graph, name: str) -> np.ndarray | None:
    """Object array of dims for a short integer constant."""
    arr = graph.constants.get(name)
    if arr is not None and arr.dtype.kind in "iu" and arr.size <= _SYM_MAX:
        return arr.astype(object)
    return None


def _sym_eval(node: Node, args: list[np.ndarray]) -> np.ndarray | None:
    """Evaluate a shape-arithmetic op on object arrays of dims (ints and sympy expressions)."""
    a = node.attrs
    op = node.op
    if op == "concat":
        return np.concatenate(args, axis=a.get("axis", 0))
    if op == "gather":
        idx = args[1]
        if any(not isinstance(i, int) for i in idx.reshape(-1)):
            return None
        return np.take(args[0], idx.astype(np.int64), axis=a.get("axis", 0))
    if op == "unsqueeze":
        out = args[0]
        for ax in sorted(a["axes"]):
            out = np.expand_dims(out, ax)
        return out
    if op == "squeeze":
        return np.squeeze(args[0], axis=tuple(a["axes"])) if a.get("axes") else \
            np.squeeze(args[0])
    if op in ("reshape", "expand"):
        shape = [int(d) for d in a["shape"]]
        return args[0].reshape(shape) if op == "reshape" else np.broadcast_to(args[0], shape)
    if op == "slice":
        idx = [slice(None)] * args[0].ndim
        for ax, st, en, sp in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
            idx[ax] = slice(st, None if (en == -1 and sp < 0) else en, sp)
        return args[0][tuple(idx)]
    if op in ("add", "sub", "mul"):
        f = {"add": np.add, "sub": np.subtract, "mul": np.multiply}[op]
        return f(args[0], args[1])
    if op in ("cast", "identity"):
        return args[0]
    return None


def fold_symbolic(graph: Graph) -> int:
    """Turn integer shape arithmetic on ``dims_tensor`` values into one ``dims_tensor``
    (symbolic) per result, so ``Shape -> Gather -> Concat`` style chains that reached data
    collapse even when the dims are symbolic. Returns the number of nodes rewritten."""
    from llmc import dims as D
    from llmc.dtypes import is_int

    known: dict[str, np.ndarray] = {}
    changed = 0
    for node in graph.nodes:
        if node.op == "dims_tensor":
            known[node.outputs[0]] = np.array(list(node.attrs.get("values", [])) or [],
                                              dtype=object)
            continue
        if node.op not in _SYM_OPS or len(node.outputs) != 1 or _has_symbols(node.attrs):
            continue
        out_ty = graph.types[node.outputs[0]]
        if not is_int(out_ty.dtype) or not out_ty.is_static:
            continue
        args = []
        for i in node.inputs:
            v = known.get(i)
            if v is None:
                v = _sym_source(graph, i)
            args.append(v)
        if any(v is None for v in args) or not any(i in known for i in node.inputs):
            continue
        if node.op == "cast" and not is_int(graph.types[node.inputs[0]].dtype):
            continue
        try:
            val = _sym_eval(node, args)
            val = None if val is None else np.asarray(val, dtype=object)
        except Exception:  # noqa: BLE001 - leave anything unusual to run time
            val = None
        if val is None or val.size > _SYM_MAX or tuple(val.shape) != tuple(out_ty.shape):
            continue
        val = np.array([D.dim(x) for x in val.reshape(-1)], dtype=object).reshape(val.shape)
        known[node.outputs[0]] = val
        if val.ndim == 1:
            node.op, node.inputs = "dims_tensor", []
            node.attrs = {"values": list(val), "dtype": out_ty.dtype}
            changed += 1
    return changed


@register_pass("constant_fold")
def constant_fold(graph: Graph) -> Graph:
    """Replace every foldable node by constants named like its outputs (in one forward sweep,
    so chains of constant nodes fold completely), after collapsing symbolic shape arithmetic
    into ``dims_tensor`` nodes (those with static values then fold like any constant)."""
    fold_symbolic(graph)
    uses = use_counts(graph)
    kept = []
    freed: set[str] = set()
    for node in graph.nodes:
        outs = try_fold(graph, node, uses)
        if outs is None:
            kept.append(node)
            continue
        for name, arr in zip(node.outputs, outs):
            add_constant_as(graph, name, arr)
        for i in node.inputs:
            if i:
                uses[i] -= 1
                if uses[i] == 0:
                    freed.add(i)
    graph.nodes = kept
    # inputs that only fed folded nodes are gone now (so the report shows bytes saved)
    for c in [c for c in freed if c in graph.constants and c not in graph.outputs]:
        del graph.constants[c]
        graph.types.pop(c, None)
    return graph
