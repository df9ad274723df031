"""int8 weight-only quantization (W8A32) of linear layers, symmetric per output channel.

Why: in LLM decoding every weight is read once per token, so the bytes are the cost; int8
codes are 4x smaller than fp32 and, with one scale per output channel, lose far less than
int4 (no calibration data needed: activations stay float32). ``qlinear_int8_wo`` converts
the codes to float in registers inside the matmul and scales each output once.

With a ``group_size`` the scale is per (group of G rows of K, output channel) instead
(``qlinear_int8_wo_grouped``): an outlier weight then only coarsens its own group, for 4 / G
extra bytes per weight (the decode kernel sums code * x per group and scales each sum once).
"""
from __future__ import annotations

from typing import Iterable

from llmc.errors import InputError
from llmc.ir import Graph
from llmc.ops.quant_w8 import quantize_weight_int8_wo, quantize_weight_int8_wo_grouped

from .int4 import GROUP_SIZES
from .quantize import drop_unused_constants, find_linear_sites, replace_site


def layer_group_size(k: int, group_size: int) -> int | None:
    """The group size a layer with K input rows uses: ``group_size`` when it divides K, else
    the largest of 64/32 below it that does (int4's rule), None when none does."""
    return next((c for c in (group_size,) + GROUP_SIZES[::-1] if c <= group_size and k % c == 0),
                None)


def quantize_int8_wo(graph: Graph, skip: Iterable[str] = (), group_size: int | None = None
                     ) -> tuple[Graph, dict]:
    """Rewrite every float32 linear layer (not in ``skip``) into ``qlinear_int8_wo`` (one scale
    per output channel, ``group_size`` None) or ``qlinear_int8_wo_grouped`` (one scale per
    group of ``group_size`` rows of K and output channel; 32, 64 or 128, smaller per layer
    when K needs it, see :func:`layer_group_size`; a K that none of them divides is refused).

    Returns (new graph, info) where info["layers"] lists name, k, n, precision ("int8" or
    "int8/g<G>") and group_size (None for per-channel) per layer.
    """
    if group_size is not None and group_size not in GROUP_SIZES:
        raise InputError(f"int8 group size must be one of {GROUP_SIZES} (or none: per output "
                         f"channel), got {group_size}")
    g = graph.copy()
    skip = set(skip)
    info = {"layers": []}
    for site in find_linear_sites(g):
        if site.name in skip:
            info["layers"].append({"name": site.name, "k": site.k, "n": site.n,
                                   "precision": "float32", "group_size": None})
            continue
        base = site.name or "qlinear8wo"
        gs = None
        if group_size is None:
            packed, scales = quantize_weight_int8_wo(g.constants[site.w])
            op, attrs = "qlinear_int8_wo", {"n": site.n, "k": site.k}
        else:
            gs = layer_group_size(site.k, group_size)
            if gs is None:
                raise InputError(f"int8 group-wise: linear layer {site.name!r} has K={site.k}, "
                                 f"which no group size <= {group_size} of {GROUP_SIZES} divides; "
                                 "use per-channel int8 (no group size) for this model")
            packed, scales = quantize_weight_int8_wo_grouped(g.constants[site.w], gs)
            op, attrs = "qlinear_int8_wo_grouped", {"n": site.n, "k": site.k, "group_size": gs}
        ins = [site.x, g.add_constant(packed, f"{base}.w_int8"),
               g.add_constant(scales, f"{base}.w_scale")]
        if site.bias:
            ins.append(site.bias)
        replace_site(g, site, op, ins, attrs)
        info["layers"].append({"name": site.name, "k": site.k, "n": site.n,
                               "precision": "int8" if gs is None else f"int8/g{gs}",
                               "group_size": gs})
    drop_unused_constants(g)
    return g, info
