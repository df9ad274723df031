"""int8 static quantization (W8A8) of linear layers, with calibrators and SmoothQuant.

Why static W8A8: with both operands in int8 the inner products run as integer dot products
(AVX-512 VNNI: 64 multiply-adds per instruction vs 16 fp32 FMAs), and the weights shrink 4x.
Weights are quantized symmetrically per output channel; each layer's input gets one per-tensor
scale chosen on calibration data by a calibrator:

- ``minmax``: the largest |x| seen (no clipping; outliers cost resolution);
- ``percentile``: the 99.99th percentile of |x| (clips rare outliers);
- ``entropy``: TensorRT's KL-divergence search over a 2048-bin histogram of |x|: the clip
  threshold whose 128-level quantized distribution is closest to the observed one.

SmoothQuant (Xiao et al. 2023) moves activation outliers into the weights: per input channel
s_k = max|X_k|^a / max|W_k|^(1-a); X/s and s*W have the same product. The 1/s factor rides in
``qlinear_int8``'s ``smooth`` input (applied while quantizing x), so it needs no preceding
norm to fold into and works for every linear layer.

A linear layer ("site") is ``matmul(x, W)`` with W a 2-D float32 constant [K, N], optionally
followed by ``add(·, b)`` with a constant b [N] that becomes the kernel's bias. A 2-D ``conv``
of group 1 with constant weights becomes ``qconv2d_int8`` (compiler/ops/quant_conv.py): the
same VNNI GEMM over patch rows, per-output-channel weights, no SmoothQuant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from llmc.calibration import ActivationStats, Batch, collect
from llmc.errors import InputError
from llmc.ir import Graph, Node
from llmc.ops.quant import QMAX8, pack_int8, quantize_activation

CALIBRATORS = ("minmax", "percentile", "entropy")


# ----------------------------------------------------------------------------- sites
@dataclass
class LinearSite:
    """One quantizable linear layer of a graph."""

    name: str            # the matmul node's name (stable id for reports and skip lists)
    x: str               # activation input
    w: str               # float32 constant [K, N]
    bias: str | None     # float32 constant [N] folded from a following add
    matmul: Node
    add: Node | None
    k: int
    n: int


def find_linear_sites(graph: Graph) -> list[LinearSite]:
    """Every matmul with a 2-D float32 constant right operand (and its bias add, if any)."""
    consumers = graph.consumers()
    sites = []
    for i, node in enumerate(graph.nodes):
        if node.op != "matmul" or node.inputs[1] not in graph.constants:
            continue
        x, w = node.inputs
        wt, xt = graph.types[w], graph.types[x]
        if wt.rank != 2 or wt.dtype != "float32" or xt.dtype != "float32" or xt.rank < 2:
            continue
        k, n = (int(d) for d in wt.shape)
        add, bias = None, None
        users = consumers.get(node.outputs[0], [])
        if len(users) == 1 and users[0].op == "add" and node.outputs[0] not in graph.outputs:
            u = users[0]
            other = u.inputs[1] if u.inputs[0] == node.outputs[0] else u.inputs[0]
            ot = graph.types.get(other)
            if other in graph.constants and ot.dtype == "float32" and ot.shape == (n,) and \
                    graph.types[u.outputs[0]].shape == graph.types[node.outputs[0]].shape:
                add, bias = u, other
        sites.append(LinearSite(node.name or f"matmul_{i}", x, w, bias, node, add, k, n))
    return sites


@dataclass
class ConvSite:
    """One quantizable 2-D convolution (group 1, constant float32 weight [Cout, Cin, kh, kw])."""

    name: str
    x: str
    w: str
    bias: str | None     # float32 constant [Cout] (the conv's own third input)
    node: Node
    k: int               # Cin * kh * kw
    n: int               # Cout


def find_conv_sites(graph: Graph) -> list[ConvSite]:
    """Every plain 2-D float32 conv of group 1 with constant weights (and constant bias)."""
    sites = []
    for i, node in enumerate(graph.nodes):
        if node.op != "conv" or node.inputs[1] not in graph.constants or \
                int(node.attrs.get("group", 1)) != 1:
            continue
        x, w = node.inputs[:2]
        bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        wt, xt = graph.types[w], graph.types[x]
        if wt.rank != 4 or xt.rank != 4 or wt.dtype != "float32" or xt.dtype != "float32" or \
                (bias is not None and bias not in graph.constants):
            continue
        co, ci, kh, kw = (int(d) for d in wt.shape)
        sites.append(ConvSite(node.name or f"conv_{i}", x, w, bias, node, ci * kh * kw, co))
    return sites


def find_int8_sites(graph: Graph) -> list:
    """Linear layers, then convolutions: everything the int8 mode rewrites."""
    return find_linear_sites(graph) + find_conv_sites(graph)


def replace_site(graph: Graph, site: LinearSite, op: str, inputs: Sequence[str], attrs: dict
                 ) -> None:
    """Put one ``op`` node where the site's matmul (+ bias add) was, keeping the output name."""
    target = site.add if site.add is not None else site.matmul
    new = Node(op, list(inputs), list(target.outputs), attrs, site.name)
    idx = graph.nodes.index(target)
    graph.nodes[idx] = new
    if site.add is not None:
        graph.nodes.remove(site.matmul)
        graph.types.pop(site.matmul.outputs[0], None)


def drop_unused_constants(graph: Graph) -> None:
    """Remove constants nothing reads any more (the fp32 weights that were replaced)."""
    used = {i for n in graph.nodes for i in n.inputs} | set(graph.outputs)
    for c in [c for c in graph.constants if c not in used]:
        del graph.constants[c]
        graph.types.pop(c, None)


# ----------------------------------------------------------------------------- calibrators
def minmax_amax(absx: np.ndarray) -> float:
    """Largest |x|."""
    return float(absx.max()) if absx.size else 0.0


def percentile_amax(absx: np.ndarray, percentile: float = 99.99) -> float:
    """The ``percentile``-th percentile of |x|."""
    return float(np.percentile(absx, percentile)) if absx.size else 0.0


def entropy_amax(absx: np.ndarray, bins: int = 2048, levels: int = 128, step: int = 8
                 ) -> float:
    """Clip threshold minimizing KL(P || Q) between |x|'s histogram and its quantized form."""
    amax = float(absx.max()) if absx.size else 0.0
    if amax == 0.0:
        return 0.0
    hist, edges = np.histogram(absx, bins=bins, range=(0.0, amax))
    hist = hist.astype(np.float64)
    best_i, best_kl = bins, np.inf
    for i in range(levels, bins + 1, step):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()        # clipped mass lands in the last bin
        idx = (np.arange(i) * levels) // i
        src = hist[:i]
        nz = (src > 0).astype(np.float64)
        sums = np.bincount(idx, weights=src, minlength=levels)
        cnt = np.bincount(idx, weights=nz, minlength=levels)
        q = np.where(nz > 0, sums[idx] / np.maximum(cnt[idx], 1), 0.0)
        ps, qs = p.sum(), q.sum()
        if ps == 0 or qs == 0:
            continue
        p /= ps
        q /= qs
        m = p > 0
        kl = float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def activation_amax(samples: np.ndarray, calibrator: str, percentile: float = 99.99) -> float:
    """The clip range of a per-tensor activation quantizer chosen by ``calibrator``."""
    absx = np.abs(samples).ravel()
    if calibrator == "minmax":
        return minmax_amax(absx)
    if calibrator == "percentile":
        return percentile_amax(absx, percentile)
    if calibrator == "entropy":
        return entropy_amax(absx)
    raise InputError(f"unknown calibrator {calibrator!r}; choose one of {CALIBRATORS}")


# ----------------------------------------------------------------------------- weights
def quantize_weight_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [K, N] -> (int8 [N, K], float32 scale [N]): symmetric per output channel, +-127."""
    wt = np.ascontiguousarray(w.T.astype(np.float32))
    amax = np.abs(wt).max(axis=1)
    scale = np.where(amax > 0, amax / QMAX8, 1.0).astype(np.float32)
    q = np.clip(np.round(wt / scale[:, None]), -QMAX8, QMAX8).astype(np.int8)
    return q, scale


def smooth_factors(x_chan_max: np.ndarray, w: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """SmoothQuant's per-input-channel s (x is divided by it, W's rows multiplied)."""
    wmax = np.abs(w).max(axis=1)
    s = np.power(np.maximum(x_chan_max, 1e-5), alpha) / np.power(np.maximum(wmax, 1e-5),
                                                                 1 - alpha)
    return np.clip(s, 1e-4, 1e4).astype(np.float32)


@dataclass
class Int8Layer:
    """What the quantizer decided for one layer (reported and reused by the sensitivity pass)."""

    name: str
    x_scale: float
    smooth: np.ndarray | None
    wq: np.ndarray          # int8 [N, K]
    w_scale: np.ndarray     # float32 [N]
    local_error: float      # rel. L2 error of this layer's output on the calibration rows


def plan_int8_layer(site: LinearSite, w: np.ndarray, x_rows: np.ndarray,
                    x_chan_max: np.ndarray, calibrator: str = "minmax",
                    smoothquant: bool = False, alpha: float = 0.5) -> Int8Layer:
    """Quantize one layer's weight and choose its activation scale (and smoothing)."""
    smooth = None
    wf = w.astype(np.float32)
    if smoothquant:
        s = smooth_factors(x_chan_max, wf, alpha)
        wf = wf * s[:, None]
        smooth = (1.0 / s).astype(np.float32)
    xr = x_rows * smooth if smooth is not None else x_rows
    amax = activation_amax(xr, calibrator)
    x_scale = max(amax, 1e-8) / QMAX8
    wq, w_scale = quantize_weight_int8(wf)
    xq = quantize_activation(x_rows, x_scale, smooth).astype(np.float32)
    y_q = (xq @ wq.T.astype(np.float32)) * (np.float32(x_scale) * w_scale)
    y = x_rows @ w.astype(np.float32)
    err = float(np.linalg.norm(y_q - y) / max(np.linalg.norm(y), 1e-30))
    return Int8Layer(site.name, float(x_scale), smooth, wq, w_scale, err)


def apply_int8_layer(graph: Graph, site: LinearSite, layer: Int8Layer) -> None:
    """Rewrite ``site`` into a ``qlinear_int8`` node with ``layer``'s tensors."""
    base = site.name or "qlinear"
    ins = [site.x,
           graph.add_constant(pack_int8(layer.wq), f"{base}.w_int8"),
           graph.add_constant(layer.w_scale, f"{base}.w_scale"),
           graph.add_constant(layer.wq.astype(np.int32).sum(axis=1).astype(np.int32),
                              f"{base}.w_colsum"),
           site.bias or ""]
    if layer.smooth is not None:
        ins.append(graph.add_constant(layer.smooth, f"{base}.smooth"))
    while ins and not ins[-1]:
        ins.pop()
    replace_site(graph, site, "qlinear_int8",
                 ins, {"n": site.n, "k": site.k, "x_scale": layer.x_scale})


def plan_int8_conv(site: ConvSite, w: np.ndarray, x_rows: np.ndarray, calibrator: str
                   ) -> Int8Layer:
    """Per-channel weights of a conv ([Cout, kh*kw*Cin]) and its per-tensor input scale.

    The local error is sqrt(ex^2 + ew^2) of the relative L2 errors of the quantized input
    samples and weights (a conv's output needs whole patches, which the samples are not).
    """
    amax = activation_amax(x_rows, calibrator)
    x_scale = max(amax, 1e-8) / QMAX8
    w2 = w.astype(np.float32).transpose(0, 2, 3, 1).reshape(site.n, site.k)  # (kh, kw, c)
    wq, w_scale = quantize_weight_int8(w2.T)
    ew = np.linalg.norm(wq * w_scale[:, None] - w2) / max(np.linalg.norm(w2), 1e-30)
    xd = quantize_activation(x_rows, x_scale).astype(np.float32) * np.float32(x_scale)
    ex = np.linalg.norm(xd - x_rows) / max(np.linalg.norm(x_rows), 1e-30)
    return Int8Layer(site.name, float(x_scale), None, wq, w_scale, float(np.hypot(ex, ew)))


def apply_int8_conv(graph: Graph, site: ConvSite, layer: Int8Layer) -> None:
    """Rewrite ``site`` into a ``qconv2d_int8`` node with ``layer``'s tensors."""
    from llmc.ops.quant_conv import conv_geometry
    base = site.name or "qconv"
    ins = [site.x, graph.add_constant(pack_int8(layer.wq), f"{base}.w_int8"),
           graph.add_constant(layer.w_scale, f"{base}.w_scale"),
           graph.add_constant(layer.wq.astype(np.int32).sum(axis=1).astype(np.int32),
                              f"{base}.w_colsum")]
    if site.bias:
        ins.append(site.bias)
    kernel = [int(d) for d in graph.types[site.w].shape[2:]]
    attrs = {"n": site.n, "k": site.k, "kernel": kernel, "x_scale": layer.x_scale,
             **{a: list(site.node.attrs[a]) for a in ("strides", "pads", "dilations")
                if site.node.attrs.get(a) is not None}}
    conv_geometry(attrs)  # validates what we copied
    new = Node("qconv2d_int8", ins, list(site.node.outputs), attrs, site.name)
    graph.nodes[graph.nodes.index(site.node)] = new


def plan_int8(graph: Graph, batches: Sequence[Batch], calibrator: str = "minmax",
              smoothquant: bool = False, alpha: float = 0.5,
              stats: ActivationStats | None = None) -> tuple[list[LinearSite], list[Int8Layer]]:
    """Calibrate on ``batches`` and plan every linear site (the graph is not changed)."""
    if calibrator not in CALIBRATORS:
        raise InputError(f"unknown calibrator {calibrator!r}; choose one of {CALIBRATORS}")
    sites = find_int8_sites(graph)
    if stats is None:
        stats, _ = collect(graph, batches, {s.x for s in sites})
    layers = [plan_int8_conv(s, graph.constants[s.w], stats.samples(s.x), calibrator)
              if isinstance(s, ConvSite) else
              plan_int8_layer(s, graph.constants[s.w], stats.samples(s.x), stats.chan_max[s.x],
                              calibrator, smoothquant, alpha) for s in sites]
    return sites, layers


def quantize_int8(graph: Graph, batches: Sequence[Batch], calibrator: str = "minmax",
                  smoothquant: bool = False, alpha: float = 0.5,
                  skip: Iterable[str] = ()) -> tuple[Graph, dict]:
    """W8A8 static quantization of every linear layer and conv not named in ``skip``.

    Returns the rewritten copy of ``graph`` and an info dict (per-layer scales and local
    errors) for the accuracy report.
    """
    g = graph.copy()
    sites, layers = plan_int8(g, batches, calibrator, smoothquant, alpha)
    return apply_int8_plan(g, sites, layers, skip)


def apply_int8_plan(g: Graph, sites: Sequence[LinearSite], layers: Sequence[Int8Layer],
                    skip: Iterable[str] = ()) -> tuple[Graph, dict]:
    """Rewrite the planned sites of ``g`` in place (except ``skip``); returns (g, info)."""
    skip = set(skip)
    info = {"layers": []}
    for site, layer in zip(sites, layers):
        quantized = site.name not in skip
        if quantized:
            (apply_int8_conv if isinstance(site, ConvSite) else apply_int8_layer)(g, site, layer)
        info["layers"].append({"name": site.name, "k": site.k, "n": site.n,
                               "precision": "int8" if quantized else "float32",
                               "x_scale": layer.x_scale, "smoothquant": layer.smooth is not None,
                               "local_rel_error": layer.local_error})
    drop_unused_constants(g)
    return g, info


# ----------------------------------------------------------------------------- QDQ models
def _const_through(graph: Graph, name: str, prod: dict) -> np.ndarray | None:
    """The constant behind ``name``, looking through reshape/cast/identity nodes."""
    seen = 0
    while name not in graph.constants:
        n = prod.get(name)
        if n is None or n.op not in ("reshape", "cast", "identity", "squeeze", "unsqueeze") or \
                seen > 4:
            return None
        name, seen = n.inputs[0], seen + 1
    return np.asarray(graph.constants[name])


def _dequant_parts(graph: Graph, name: str, prod: dict):
    """(integer source value, zero point array, scale array) of an imported DequantizeLinear."""
    mul = prod.get(name)
    if mul is None or mul.op != "mul":
        return None
    scale = _const_through(graph, mul.inputs[1], prod)
    t = prod.get(mul.inputs[0])
    zero = np.zeros(1)
    if t is not None and t.op == "sub":
        zero = _const_through(graph, t.inputs[1], prod)
        t = prod.get(t.inputs[0])
    if scale is None or zero is None or t is None or t.op != "cast" or \
            graph.types[t.inputs[0]].dtype != "int8":
        return None
    return t.inputs[0], zero, scale


def _quantize_source(graph: Graph, q: str, prod: dict, scale: np.ndarray, zero: np.ndarray
                     ) -> str | None:
    """The float x of an imported QuantizeLinear(x, scale, zero) producing ``q``, else None."""
    n = prod.get(q)
    chain = ["cast", "clip"]
    for op in chain:
        if n is None or n.op != op:
            return None
        n = prod.get(n.inputs[0])
    if n is not None and n.op == "add":
        zp = _const_through(graph, n.inputs[1], prod)
        if zp is None or zp.size != 1 or float(zp.ravel()[0]) != float(zero.ravel()[0]):
            return None
        n = prod.get(n.inputs[0])
    elif np.any(zero != 0):
        return None
    if n is None or n.op != "round":
        return None
    n = prod.get(n.inputs[0])
    if n is None or n.op != "div":
        return None
    s = _const_through(graph, n.inputs[1], prod)
    if s is None or s.size != 1 or float(s.ravel()[0]) != float(scale.ravel()[0]):
        return None
    return n.inputs[0]


def fuse_qdq(graph: Graph) -> tuple[Graph, dict]:
    """Run ONNX QDQ linear layers as int8: DQ(Q(x)) @ DQ(W int8) -> ``qlinear_int8``.

    Run on the imported graph before constant folding (folding turns the weight's
    DequantizeLinear into a float constant). Handles int8 activations (per tensor, any zero
    point) and symmetric int8 weights (zero point 0, per tensor or per column); other QDQ
    patterns (uint8 activations, asymmetric weights, conv) keep running as float emulation.
    """
    g = graph.copy()
    prod = g.producers()
    info = {"fused": []}
    for i, node in enumerate(list(g.nodes)):
        if node.op != "matmul":
            continue
        wp = _dequant_parts(g, node.inputs[1], prod)
        xp = _dequant_parts(g, node.inputs[0], prod)
        if wp is None or xp is None or wp[0] not in g.constants or np.any(wp[1] != 0) or \
                xp[1].size != 1 or xp[2].size != 1:
            continue
        wq = np.asarray(g.constants[wp[0]])
        xt = g.types[node.inputs[0]]
        if wq.ndim != 2 or xt.rank < 2:
            continue
        k, n = wq.shape
        wscale = np.broadcast_to(wp[2].astype(np.float32).reshape(-1), (n,)).copy() \
            if wp[2].size in (1, n) else None
        x = _quantize_source(g, xp[0], prod, xp[2], xp[1])
        if wscale is None or x is None:
            continue
        wq_t = np.ascontiguousarray(wq.T.astype(np.int8))
        name = node.name or f"qdq_matmul_{i}"
        ins = [x, g.add_constant(pack_int8(wq_t), f"{name}.w_int8"),
               g.add_constant(wscale, f"{name}.w_scale"),
               g.add_constant(wq_t.astype(np.int32).sum(axis=1).astype(np.int32),
                              f"{name}.w_colsum")]
        new = Node("qlinear_int8", ins, list(node.outputs),
                   {"n": n, "k": k, "x_scale": float(xp[2].ravel()[0]),
                    "x_zero_point": int(xp[1].ravel()[0]), "x_qmin": -128}, name)
        g.nodes[g.nodes.index(node)] = new
        info["fused"].append(name)
    from .dce import dce
    return dce(g), info


def _fuse_qdq_pass(graph: Graph) -> Graph:
    return fuse_qdq(graph)[0]


from .manager import register_pass  # noqa: E402

register_pass("fuse_qdq")(_fuse_qdq_pass)
