"""Fold inference-mode batch_norm into the weights of the conv (or 2-D matmul) before it.

``batch_norm(conv(x, w, b))`` with constant parameters is ``conv(x, w*s, (b-mean)*s+bias)``
where ``s = scale/sqrt(var+eps)`` per output channel: one kernel and no normalization pass
at run time. The new weights are computed in float64 and stored in the weight's dtype.
"""
from __future__ import annotations

import numpy as np

from llmc.dtypes import is_float
from llmc.ir import Graph, Node

from .manager import register_pass
from .rewrite import new_constant, remove_nodes, use_counts


def _bn_params(graph: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(multiplier s, shift t) so that bn(y) = y*s + t per channel, if all params are const."""
    params = bn.inputs[1:5]
    if len(params) != 4 or any(p not in graph.constants for p in params):
        return None
    scale, bias, mean, var = (graph.constants[p].astype(np.float64).reshape(-1) for p in params)
    eps = float(bn.attrs.get("epsilon", 1e-5))
    s = scale / np.sqrt(var + eps)
    return s, bias - mean * s


@register_pass("fold_batchnorm")
def fold_batchnorm(graph: Graph) -> Graph:
    """Rewrite every conv -> batch_norm (and matmul[N,K]x[K,C] -> batch_norm) pair whose
    conv/matmul result has no other reader and whose weights and BN params are constants."""
    uses = use_counts(graph)
    prod = graph.producers()
    dead = []
    for bn in graph.nodes:
        if bn.op != "batch_norm" or not is_float(graph.types[bn.outputs[0]].dtype):
            continue
        y = bn.inputs[0]
        src = prod.get(y)
        if src is None or uses.get(y, 0) != 1 or y in graph.outputs:
            continue
        st = _bn_params(graph, bn)
        if st is None:
            continue
        s, t = st
        if src.op == "conv" and src.inputs[1] in graph.constants and \
                (len(src.inputs) < 3 or not src.inputs[2] or src.inputs[2] in graph.constants):
            w = graph.constants[src.inputs[1]]
            if w.shape[0] != s.size:
                continue
            b = graph.constants[src.inputs[2]].astype(np.float64) \
                if len(src.inputs) > 2 and src.inputs[2] else np.zeros(w.shape[0])
            w2 = (w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
            b2 = (b * s + t).astype(w.dtype)
            bn.op, bn.attrs = "conv", dict(src.attrs)
            bn.inputs = [src.inputs[0], new_constant(graph, w2, src.inputs[1] + "_bnfold"),
                         new_constant(graph, b2, bn.name + "_bias")]
            dead.append(src)
        elif src.op == "matmul" and src.inputs[1] in graph.constants and \
                graph.types[y].rank == 2:
            w = graph.constants[src.inputs[1]]
            if w.ndim != 2 or w.shape[1] != s.size:
                continue
            w2 = (w.astype(np.float64) * s.reshape(1, -1)).astype(w.dtype)
            src.inputs = [src.inputs[0], new_constant(graph, w2, src.inputs[1] + "_bnfold")]
            bn.op, bn.attrs = "add", {}
            bn.inputs = [y, new_constant(graph, t.astype(w.dtype), bn.name + "_bias")]
    remove_nodes(graph, dead)
    return graph
