"""int4 weight-only quantization (W4A32 / W4A16) of linear layers, group-wise, asymmetric.

Why weight-only: in LLM decoding every weight is read once per token, so the bytes are the
cost; 4-bit codes with one float16 scale and one uint8 zero point per group of G input rows
are ~6.4x (G=32) to ~7.7x (G=128) smaller than fp32, and ``qlinear_int4`` dequantizes them in
registers inside the matmul. Activations stay in their float dtype; no calibration needed.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from llmc.errors import InputError
from llmc.ir import Graph
from llmc.ops.quant import pack_int4, pack_int4_params

from .quantize import drop_unused_constants, find_linear_sites, replace_site

GROUP_SIZES = (32, 64, 128)


def quantize_weight_int4(w: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W [K, N] -> (w, scales, zeros) in ``qlinear_int4``'s 64-column panel layout:
    uint8 [N/64, K/2, 64], float16 [N/64, K/G, 64], uint8 [N/64, K/G, 64] (N rounded up).

    Per group of ``group`` rows and output column: codes 0..15 spanning [min, max] of the group
    (asymmetric), W ~ (code - zero) * scale.
    """
    k, n = w.shape
    if k % group:
        raise InputError(f"int4: K={k} is not a multiple of the group size {group}")
    g = w.astype(np.float32).reshape(k // group, group, n)
    lo = np.minimum(g.min(axis=1), 0.0)
    hi = np.maximum(g.max(axis=1), 0.0)
    scale = ((hi - lo) / 15.0).astype(np.float16).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0))
    zero = np.clip(np.round(-lo / scale), 0, 15)
    codes = np.clip(np.round(g / scale[:, None, :]) + zero[:, None, :], 0, 15)
    ps, pz = pack_int4_params(scale.astype(np.float16), zero.astype(np.uint8))
    return pack_int4(codes.reshape(k, n).astype(np.uint8)), ps, pz


def quantize_int4(graph: Graph, group_size: int = 128, skip: Iterable[str] = ()
                  ) -> tuple[Graph, dict]:
    """Rewrite every linear layer (not in ``skip``) into ``qlinear_int4``; returns (graph, info).

    A layer whose K is not a multiple of ``group_size`` uses the largest of 128/64/32 that
    divides K, or stays float32 when none does (listed in the info).
    """
    if group_size not in GROUP_SIZES:
        raise InputError(f"int4 group size must be one of {GROUP_SIZES}, got {group_size}")
    g = graph.copy()
    skip = set(skip)
    info = {"layers": []}
    for site in find_linear_sites(g):
        gs = next((c for c in (group_size,) + GROUP_SIZES if c <= group_size and
                   site.k % c == 0), None) if site.k % group_size else group_size
        if site.name in skip or gs is None:
            info["layers"].append({"name": site.name, "k": site.k, "n": site.n,
                                   "precision": "float32"})
            continue
        packed, scales, zeros = quantize_weight_int4(g.constants[site.w], gs)
        base = site.name or "qlinear4"
        ins = [site.x, g.add_constant(packed, f"{base}.w_int4"),
               g.add_constant(scales, f"{base}.scales"), g.add_constant(zeros, f"{base}.zeros")]
        if site.bias:
            ins.append(site.bias)
        replace_site(g, site, "qlinear_int4", ins, {"n": site.n, "k": site.k, "group_size": gs})
        info["layers"].append({"name": site.name, "k": site.k, "n": site.n,
                               "precision": f"int4/g{gs}"})
    drop_unused_constants(g)
    return g, info
