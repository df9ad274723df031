"""Build a graph for the simulated systolic array: array layers as packed calls, rest on x86.

Why this shape: the array only does GEMMs (``qlinear_int8``: quantize -> int8 GEMM -> int32 ->
dequantize/bias, one fused call), so each of those becomes ``R.call_dps_packed(
"llmc.systolic.qlinear", ...)`` into the simulator (see :mod:`.runtime_hook`) and every other
node is lowered by the shared TE lowering and scheduled by the x86 backend, exactly as for
``--target x86``. Fused groups that contain a matmul are inlined back to single nodes first, so
the matmul can leave the host for the array.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import tvm
from tvm import relax

from llmc.errors import BackendError
from llmc.ir import Graph
from llmc.ops.quant import unpack_int8

from .. import lowering as L
from .. import relax_builder as RB
from ..x86.build import compile_cpu
from ..x86.target import host_target, vector_lanes
from .bf16 import OP as BF16
from .qconv import OP as QCONV
from .quantize import (array_convs, array_matmuls, calibrate, rewrite_to_bf16,
                       rewrite_to_qlinear)
from .runtime_hook import BF16_FUNC_NAME, CONV_FUNC_NAME, FUNC_NAME, register
from .sim.config import SystolicConfig, load_config

_ARRAY_OPS = ("matmul", "qlinear_int8", "conv", QCONV, BF16)
_ON_ARRAY = ("qlinear_int8", QCONV, BF16)


@dataclass
class BuildResult:
    """What the artifact writer needs (same fields as the x86 backend's) plus the array layers."""

    executable: object
    param_names: list[str]
    input_names: list[str]
    output_names: list[str]
    target: dict
    kernels: list[str]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    schedules: dict[str, str] = field(default_factory=dict)
    launches: int = 0
    systolic: dict = field(default_factory=dict)     # config as a dict
    array_layers: list[dict] = field(default_factory=list)
    graph: Graph | None = None                       # the int8 graph built (the reference)


def unfuse(graph: Graph) -> Graph:
    """Inline every ``fused`` node whose body holds a matmul, so the array can take it."""
    if not any(n.op == "fused" and any(b.op in _ARRAY_OPS for b in n.attrs["body"].nodes)
               for n in graph.nodes):
        return graph
    g = graph.copy()
    g.nodes = []
    for n in graph.nodes:
        body = n.attrs.get("body") if n.op == "fused" else None
        if body is None or not any(b.op in _ARRAY_OPS for b in body.nodes):
            g.nodes.append(n)
            continue
        for o in n.outputs:          # re-typed by add_node when the body defines them
            del g.types[o]
        ren = dict(zip(body.inputs, n.inputs))
        ren.update(zip(body.outputs, n.outputs))
        for c, arr in body.constants.items():
            ren[c] = g.add_constant(arr, c)
        for b in body.nodes:
            for o in b.outputs:
                if o not in ren:
                    ren[o] = g.fresh_name(o)
            g.add_node(b.op, [ren.get(i, i) if i else i for i in b.inputs], b.attrs,
                       name=g.fresh_name(b.name), outputs=[ren[o] for o in b.outputs])
    return g


def _array_params(graph: Graph, node) -> dict[str, np.ndarray]:
    """The arrays the packed call takes for one ``qlinear_int8`` node, keyed by param name."""
    if node.op == BF16:
        base = RB._ident(node.name)
        bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        return {base + "__w": graph.constants[node.inputs[1]].astype(np.float32),
                base + "__bias": (graph.constants[bias].astype(np.float32) if bias is not None
                                  else np.zeros((0,), np.float32))}
    if node.op == QCONV:
        base = RB._ident(node.name)
        bias = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3] else None
        return {base + "__wq": graph.constants[node.inputs[1]],
                base + "__wscale": graph.constants[node.inputs[2]].astype(np.float32),
                base + "__bias": (graph.constants[bias].astype(np.float32) if bias is not None
                                  else np.zeros((0,), np.float32)),
                base + "__xscale": np.array([node.attrs["x_scale"]], np.float32)}
    if len(node.inputs) > 5 and node.inputs[5]:
        raise BackendError(f"node {node.name!r} (qlinear_int8): SmoothQuant scales are not "
                           "supported on the systolic target; quantize without --smooth")
    x, wp, s, _cs = node.inputs[:4]
    n, k = int(node.attrs["n"]), int(node.attrs["k"])
    for v in (wp, s):
        if v not in graph.constants:
            raise BackendError(f"node {node.name!r} (qlinear_int8): weight {v!r} is not a "
                               "constant; the array needs weights known at compile time")
    bias = node.inputs[4] if len(node.inputs) > 4 and node.inputs[4] else None
    if bias is not None and bias not in graph.constants:
        raise BackendError(f"node {node.name!r} (qlinear_int8): bias must be a constant")
    base = RB._ident(node.name)
    return {
        base + "__wq": np.ascontiguousarray(unpack_int8(graph.constants[wp], n, k).T),
        base + "__wscale": graph.constants[s].astype(np.float32),
        base + "__bias": (graph.constants[bias].astype(np.float32) if bias is not None
                          else np.zeros((0,), np.float32)),
        base + "__xscale": np.array([node.attrs["x_scale"]], np.float32),
    }


def build_relax_systolic(graph: Graph, cfg: SystolicConfig):
    """Relax ``main(*inputs, *params)``: packed array calls + TE kernels for the host."""
    env = L.DimEnv()
    for name in graph.inputs:
        env.shape(graph.types[name].shape)
    array_nodes = [n for n in graph.nodes if n.op in _ON_ARRAY]
    aparams = {n.name: _array_params(graph, n) for n in array_nodes}
    host_reads = {i for n in graph.nodes if n.op not in _ON_ARRAY for i in n.inputs if i}
    params: dict[str, np.ndarray] = {}
    for c, arr in graph.constants.items():
        if c in host_reads or c in graph.outputs:
            params[c] = arr
    for d in aparams.values():
        params.update(d)
    param_names = list(params)
    cfg_json = json.dumps(cfg.to_dict(), sort_keys=True)

    bb = relax.BlockBuilder()
    rin = [relax.Var(n, RB._tensor_type(env, graph.types[n])) for n in graph.inputs]
    rparam = [relax.Var(p, relax.TensorType(list(params[p].shape), RB._dtype(params[p])))
              for p in param_names]
    values: dict[str, relax.Expr] = dict(zip(graph.inputs, rin))
    values.update(zip(param_names, rparam))
    kernels: list[str] = []
    layers: list[dict] = []
    with bb.function("main", rin + rparam):
        with bb.dataflow():
            for node in graph.nodes:
                if node.op == "qlinear_int8":
                    _emit_array(bb, graph, node, values, env, cfg_json)
                    n, k = int(node.attrs["n"]), int(node.attrs["k"])
                    layers.append({"name": node.name, "k": k, "n": n,
                                   "x_scale": float(node.attrs["x_scale"])})
                elif node.op == BF16:
                    _emit_bf16(bb, graph, node, values, env, cfg_json)
                    layers.append({"name": node.name, "op": "linear_bf16",
                                   "k": int(graph.types[node.inputs[1]].shape[0]),
                                   "n": int(graph.types[node.inputs[1]].shape[1])})
                elif node.op == QCONV:
                    _emit_conv(bb, graph, node, values, env, cfg_json)
                    layers.append({"name": node.name, "op": "conv", "kernel": node.attrs["kernel"],
                                   "x_scale": float(node.attrs["x_scale"])})
                elif node.op == "fused":
                    RB.emit_fused(bb, graph, node, values, {}, {}, env, kernels)
                else:
                    RB.emit_node(bb, graph, node, values, {}, env, kernels)
            outs = [values[o] for o in graph.outputs]
            result = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(result)
    rm = RB.RelaxModule(bb.get(), list(graph.inputs), list(graph.outputs), param_names, params,
                        env, kernels)
    return rm, layers


def _emit_packed_matmul(bb, graph: Graph, node, values: dict, env: L.DimEnv, func: str,
                        operands: list, k: int, n: int, cfg_json: str) -> None:
    """x [..., K] -> view [M, K] -> packed ``func``(x, *operands, name, config) -> [M, N] ->
    view [..., N]: the shape of every array call."""
    x = node.inputs[0]
    tx = graph.types[x]
    m = env.prim(1)
    for d in tx.shape[:-1]:
        m = m * env.prim(d)
    a = values[x]
    if tx.rank != 2:
        a = bb.emit(relax.op.reshape(a, [m, env.prim(k)]))
    y = bb.emit(relax.call_dps_packed(
        func, relax.Tuple([a] + operands + [tvm.ir.StringImm(node.name),
                                            tvm.ir.StringImm(cfg_json)]),
        out_ty=relax.TensorType([m, env.prim(n)], "float32")))
    if tx.rank != 2:
        y = bb.emit(relax.op.reshape(y, env.shape(graph.types[node.outputs[0]].shape)))
    values[node.outputs[0]] = y


def _emit_array(bb, graph: Graph, node, values: dict, env: L.DimEnv, cfg_json: str) -> None:
    """An int8 array layer: quantized weights, their scales, the input scale and the bias."""
    base = RB._ident(node.name)
    operands = [values[base + s] for s in ("__wq", "__wscale", "__xscale", "__bias")]
    _emit_packed_matmul(bb, graph, node, values, env, FUNC_NAME, operands,
                        int(node.attrs["k"]), int(node.attrs["n"]), cfg_json)


def _emit_bf16(bb, graph: Graph, node, values: dict, env: L.DimEnv, cfg_json: str) -> None:
    """A bf16 array layer: the bf16 weight [K, N] and the bias."""
    base = RB._ident(node.name)
    k, n = (int(d) for d in graph.types[node.inputs[1]].shape)
    _emit_packed_matmul(bb, graph, node, values, env, BF16_FUNC_NAME,
                        [values[base + "__w"], values[base + "__bias"]], k, n, cfg_json)


def _emit_conv(bb, graph: Graph, node, values: dict, env: L.DimEnv, cfg_json: str) -> None:
    """NCHW x -> packed im2col call -> NCHW y (shapes from the graph's types)."""
    base = RB._ident(node.name)
    args = [values[node.inputs[0]]] + [values[base + s]
                                       for s in ("__wq", "__wscale", "__xscale", "__bias")]
    attrs = {k: node.attrs[k] for k in ("kernel", "strides", "pads", "dilations")
             if k in node.attrs}
    y = bb.emit(relax.call_dps_packed(
        CONV_FUNC_NAME, relax.Tuple(args + [tvm.ir.StringImm(node.name),
                                            tvm.ir.StringImm(cfg_json),
                                            tvm.ir.StringImm(json.dumps(attrs))]),
        out_ty=RB._tensor_type(env, graph.types[node.outputs[0]])))
    values[node.outputs[0]] = y


def prepare_graph(graph: Graph, *, precision: str = "int8",
                  calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
                  config: "SystolicConfig | str | dict | None" = None,
                  calibrator: str = "minmax") -> Graph:
    """The graph the array runs: fused matmul groups inlined, float matmuls calibrated to int8.

    Run the reference interpreter on the result to get the int8 reference of the artifact.
    Linear layers are quantized by the precision pass (:func:`llmc.passes.quantize.
    quantize_int8`, ``calibrator`` minmax/percentile/entropy, no SmoothQuant: the array call
    has no smoothing step); convs by :mod:`.quantize` (minmax).
    """
    if precision not in ("int8", "auto", "bf16"):
        raise BackendError(f"--precision {precision!r}: the systolic array runs int8 (default) "
                           "or bf16 GEMMs")
    from llmc.passes import run_passes

    g = unfuse(graph)
    # weights reach matmuls through transposes of constants (torch's Linear): fold them
    g, _ = run_passes(g, passes=["constant_fold", "dce"])
    if precision == "bf16":     # no calibration: bf16 keeps the float range
        cfg = load_config(config)
        return rewrite_to_bf16(g, cfg.rows, cfg.dataflow)
    samples = list(calibration or [])
    if array_matmuls(g):
        if not samples:
            calibrate(g, samples, array_matmuls(g))      # raises the "needs calibration" error
        # the precision pass's W8A8 (same scheme: per-tensor activations, per-channel weights)
        from llmc.passes.quantize import quantize_int8

        # convs stay float here: the array maps them through im2col with its own quantization
        g, _info = quantize_int8(g, samples, calibrator=calibrator, skip=array_convs(g))
    nodes = array_matmuls(g) + array_convs(g)   # convs (and matmuls the pass left): our own
    if nodes:
        g = rewrite_to_qlinear(g, calibrate(g, samples, nodes))
    return g


def build(graph: Graph, *, systolic_config: "SystolicConfig | str | dict | None" = None,
          precision: str = "int8",
          calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
          calibrator: str = "minmax", mcpu: str | None = None) -> BuildResult:
    """Compile ``graph`` for the simulated array (``systolic_config``) plus the host CPU."""
    register()
    cfg = load_config(systolic_config)
    if precision == "bf16" or cfg.precision == "bf16":
        precision = "bf16"
        cfg = replace(cfg, precision="bf16")
    g = prepare_graph(graph, precision=precision, calibration=calibration, config=cfg,
                      calibrator=calibrator)
    target = host_target(mcpu)
    rm, layers = build_relax_systolic(g, cfg)
    ex, used = compile_cpu(rm.mod, target, vector_lanes(target),
                           f"graph {graph.name!r}: systolic build (host part for {target['mcpu']})")
    return BuildResult(ex, rm.param_names, rm.input_names, rm.output_names, target,
                       sorted(used), dict(rm.params), used, len(rm.kernels) + len(layers),
                       cfg.to_dict(), layers, g)


def target_manifest(result: BuildResult) -> dict:
    """The x86 host's requirements plus the array's configuration and the runtime hook."""
    from ..x86.manifest import required_cpu_flags
    from llmc.runtime import cpu

    mcpu = result.target.get("mcpu", "x86-64")
    return {"device": "cpu", "accelerator": "systolic-sim", "arch": cpu.host_arch(),
            "tvm_target": result.target,
            "mcpu": mcpu, "required_cpu_flags": required_cpu_flags(mcpu),
            "systolic": result.systolic, "array_layers": result.array_layers,
            "runtime_hook": "llmc.backends.systolic.runtime_hook"}
