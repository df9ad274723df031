"""int8 weight-only quantization (W8A32) of linear layers, symmetric per output channel.

Why: in LLM decoding every weight is read once per token, so the bytes are the cost; int8
codes are 4x smaller than fp32 and, with one scale per output channel, lose far less than
int4 (no calibration data needed: activations stay float32). ``qlinear_int8_wo`` converts
the codes to float in registers inside the matmul and scales each output once.
"""
from __future__ import annotations

from typing import Iterable

from llmc.ir import Graph
from llmc.ops.quant_w8 import quantize_weight_int8_wo

from .quantize import drop_unused_constants, find_linear_sites, replace_site


def quantize_int8_wo(graph: Graph, skip: Iterable[str] = ()) -> tuple[Graph, dict]:
    """Rewrite every float32 linear layer (not in ``skip``) into ``qlinear_int8_wo``.

    Returns (new graph, info) where info["layers"] lists name, k, n and precision per layer.
    """
    g = graph.copy()
    skip = set(skip)
    info = {"layers": []}
    for site in find_linear_sites(g):
        if site.name in skip:
            info["layers"].append({"name": site.name, "k": site.k, "n": site.n,
                                   "precision": "float32"})
            continue
        packed, scales = quantize_weight_int8_wo(g.constants[site.w])
        base = site.name or "qlinear8wo"
        ins = [site.x, g.add_constant(packed, f"{base}.w_int8"),
               g.add_constant(scales, f"{base}.w_scale")]
        if site.bias:
            ins.append(site.bias)
        replace_site(g, site, "qlinear_int8_wo", ins, {"n": site.n, "k": site.k})
        info["layers"].append({"name": site.name, "k": site.k, "n": site.n,
                               "precision": "int8"})
    drop_unused_constants(g)
    return g, info
