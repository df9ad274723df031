"""Calibration and the float-matmul -> ``qlinear_int8`` rewrite the systolic backend applies.

Why in the backend: operands on the array are int8. When the precision pass
(``llmc.passes.quantize``) has already produced ``qlinear_int8`` nodes they are used as they
are; otherwise this module calibrates the activation scales over sample inputs given at compile
time (per-tensor symmetric, scale = max|x| / 127 over all samples, as ``qlinear_int8``
expects) and quantizes each weight per output channel (scale = max|w[:, n]| / 127). Scales are
fixed in the artifact: nothing is derived from the values seen at run time.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from llmc.errors import InputError
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.ops.quant import QMAX8, pack_int8


def array_matmuls(graph: Graph) -> list[str]:
    """Names of the float32 matmuls with a constant 2-D weight (what goes onto the array)."""
    out = []
    for n in graph.nodes:
        if n.op != "matmul":
            continue
        a, b = n.inputs
        ta, tb = graph.types[a], graph.types[b]
        if b in graph.constants and tb.rank == 2 and ta.dtype == "float32" and \
                tb.dtype == "float32" and ta.rank >= 2:
            out.append(n.name)
    return out


def array_convs(graph: Graph) -> list[str]:
    """Names of the 2-D float32 convs (group 1) with constant weights (and bias): im2col GEMMs."""
    out = []
    for n in graph.nodes:
        if n.op != "conv" or int(n.attrs.get("group", 1)) != 1:
            continue
        x, w = n.inputs[:2]
        b = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        tx, tw = graph.types[x], graph.types[w]
        if tx.rank == 4 and tx.dtype == "float32" and w in graph.constants and tw.rank == 4 \
                and isinstance(tx.shape[1], int) and (b is None or b in graph.constants):
            out.append(n.name)
    return out


def calibrate(graph: Graph, samples: Sequence[Mapping[str, np.ndarray]],
              nodes: Sequence[str] | None = None) -> dict[str, float]:
    """Per-tensor activation scale of each array matmul, from the reference run of ``samples``."""
    nodes = list(array_matmuls(graph) if nodes is None else nodes)
    if not nodes:
        return {}
    if not samples:
        raise InputError(f"graph {graph.name!r}: the systolic target runs matmuls in int8 and "
                         "needs calibration inputs (pass calibration=[{input: array}, ...] or "
                         "--calibration FILE.npz), or a graph already quantized by --precision "
                         "int8")
    probe = graph.copy()
    by_name = {n.name: n for n in probe.nodes}
    acts = {name: by_name[name].inputs[0] for name in nodes}
    probe.set_outputs(list(dict.fromkeys(list(graph.outputs) + list(acts.values()))))
    amax = {name: 0.0 for name in nodes}
    for s in samples:
        vals = run_reference(probe, s)
        for name, a in acts.items():
            amax[name] = max(amax[name], float(np.max(np.abs(vals[a]))) if vals[a].size else 0.0)
    return {name: (v / QMAX8 if v > 0 else 1.0) for name, v in amax.items()}


def quantize_weight(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [K, N] -> (int8 [K, N], float32 scale [N]), symmetric per output channel."""
    amax = np.max(np.abs(w), axis=0).astype(np.float32)
    scale = np.where(amax > 0, amax / np.float32(QMAX8), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.round(w / scale), -QMAX8, QMAX8).astype(np.int8)
    return q, scale


def rewrite_to_qlinear(graph: Graph, scales: Mapping[str, float]) -> Graph:
    """A copy of ``graph`` whose calibrated matmuls are ``qlinear_int8`` nodes (same outputs).

    The result is also the int8 reference: ``run_reference`` on it is what the systolic
    artifact must reproduce (bit for bit on the array, within float tolerance on the host).
    """
    g = Graph(graph.name)
    for i in graph.inputs:
        g.add_input(i, graph.types[i].dtype, graph.types[i].shape)
    for c, arr in graph.constants.items():
        g.constants[c] = arr
        g.types[c] = graph.types[c]
        g._used.add(c)
    from .qconv import OP as QCONV

    bias_of = _bias_adds(graph, scales)
    skip = {add.name for add, _ in bias_of.values()}
    for n in graph.nodes:
        if n.name in skip:
            continue
        if n.name in scales and n.op == "conv":
            x, w = n.inputs[:2]
            wf = graph.constants[w].astype(np.float32)
            o, c, kh, kw = wf.shape
            wq, ws = quantize_weight(np.ascontiguousarray(wf.reshape(o, c * kh * kw).T))
            ins = [x, g.add_constant(wq, w + "_q"), g.add_constant(ws, w + "_scale")]
            if len(n.inputs) > 2 and n.inputs[2]:
                ins.append(n.inputs[2])
            attrs = {k: n.attrs[k] for k in ("strides", "pads", "dilations") if k in n.attrs}
            g.add_node(QCONV, ins, {**attrs, "kernel": [kh, kw],
                                    "x_scale": float(scales[n.name])},
                       name=n.name, outputs=n.outputs)
        elif n.name in scales:
            a, b = n.inputs
            wq, ws = quantize_weight(graph.constants[b].astype(np.float32))
            k, nn = wq.shape
            wp = g.add_constant(pack_int8(np.ascontiguousarray(wq.T)), b + "_q")
            sc = g.add_constant(ws, b + "_scale")
            cs = g.add_constant(wq.astype(np.int32).sum(axis=0).astype(np.int32), b + "_colsum")
            ins, outs = [a, wp, sc, cs], n.outputs
            if n.name in bias_of:     # the bias add runs in the array call's epilogue
                add, bias = bias_of[n.name]
                ins.append(g.add_constant(graph.constants[bias].reshape(-1).astype(np.float32),
                                          bias))
                outs = add.outputs
            g.add_node("qlinear_int8", ins,
                       {"n": int(nn), "k": int(k), "x_scale": float(scales[n.name])},
                       name=n.name, outputs=outs)
        else:
            g.add_node(n.op, n.inputs, n.attrs, name=n.name, outputs=n.outputs)
    g.set_outputs(graph.outputs)
    used = {i for n in g.nodes for i in n.inputs} | set(g.outputs)
    for c in [c for c in g.constants if c not in used]:
        del g.constants[c]
        del g.types[c]
    return g


def _bias_adds(graph: Graph, scales: Mapping[str, float]) -> dict:
    """matmul name -> (its only consumer ``add``, the float32 [N] constant it adds)."""
    consumers = graph.consumers()
    out = {}
    for n in graph.nodes:
        if n.name not in scales or n.op != "matmul" or n.outputs[0] in graph.outputs:
            continue
        users = consumers.get(n.outputs[0], [])
        if len(users) != 1 or users[0].op != "add":
            continue
        add = users[0]
        other = [i for i in add.inputs if i != n.outputs[0]]
        nn = graph.types[n.inputs[1]].shape[1]
        if len(other) == 1 and other[0] in graph.constants and \
                graph.types[other[0]].dtype == "float32" and \
                graph.constants[other[0]].size == nn and \
                graph.constants[other[0]].shape[-1:] == (nn,) and \
                graph.types[add.outputs[0]] == graph.types[n.outputs[0]]:
            out[n.name] = (add, other[0])
    return out


def rewrite_to_bf16(graph: Graph, rows: int, dataflow: str) -> Graph:
    """A copy of ``graph`` whose constant-weight float matmuls run on the bf16 array."""
    from .bf16 import OP as BF16

    nodes = set(array_matmuls(graph))
    bias_of = _bias_adds(graph, {n: 1.0 for n in nodes})
    skip = {add.name for add, _ in bias_of.values()}
    g = graph.copy()
    g.nodes = []
    for n in graph.nodes:
        if n.name in skip:
            continue
        if n.name not in nodes:
            g.nodes.append(n)
            continue
        ins, outs = list(n.inputs), list(n.outputs)
        if n.name in bias_of:
            add, bias = bias_of[n.name]
            ins.append(g.add_constant(graph.constants[bias].reshape(-1).astype(np.float32), bias))
            outs = list(add.outputs)
        for o in outs:
            del g.types[o]
        g.add_node(BF16, ins, {"rows": int(rows), "dataflow": dataflow}, name=n.name,
                   outputs=outs)
    return g


def synthetic_samples(graph: Graph, count: int = 2, seed: int = 0,
                      bindings: Mapping[str, int] | None = None) -> list[dict[str, np.ndarray]]:
    """Stand-in calibration inputs (standard normal floats, small non-negative integers).

    Only for demos and tests without data; real deployments should calibrate on real inputs.
    """
    from llmc import dims as D
    from llmc.dtypes import to_numpy

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        s = {}
        for name in graph.inputs:
            ty = graph.types[name]
            shape = [int(D.evaluate(d, dict(bindings or {}))) if not isinstance(d, int) else d
                     for d in ty.shape]
            dt = to_numpy(ty.dtype)
            if np.issubdtype(dt, np.floating):
                s[name] = rng.standard_normal(shape).astype(dt)
            elif dt == np.bool_:
                s[name] = np.ones(shape, dt)
            else:
                s[name] = rng.integers(0, 100, shape).astype(dt)
        out.append(s)
    return out
