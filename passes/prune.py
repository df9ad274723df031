"""Weight pruning of linear layers: magnitude (unstructured) and 2:4 structured.

Why: zeros compress (the artifact's weights shrink under zip/zstd) and 2:4 is the pattern
sparse tensor cores execute at 2x. Honest status on x86: **no llmc kernel skips the zeros**;
the pruned weights are stored dense, so latency is unchanged and only the compressed size
shrinks. The masks are what a sparse kernel (or the CUDA backend) would consume.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from llmc.errors import InputError
from llmc.ir import Graph

from .quantize import find_linear_sites


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask zeroing the ``sparsity`` fraction of smallest-|w| entries (ties: lower index)."""
    if not 0.0 <= sparsity < 1.0:
        raise InputError(f"sparsity must be in [0, 1), got {sparsity}")
    flat = np.abs(w).ravel()
    drop = int(round(sparsity * flat.size))
    mask = np.ones(flat.size, bool)
    if drop:
        mask[np.argsort(flat, kind="stable")[:drop]] = False
    return mask.reshape(w.shape)


def mask_2_4(w: np.ndarray, axis: int = 0) -> np.ndarray:
    """Keep-mask with exactly 2 nonzeros in every 4 consecutive entries along ``axis`` (K).

    The reduction axis is the one sparse kernels group by; W [K, N] groups along K (axis 0).
    """
    wa = np.moveaxis(np.abs(w), axis, -1)
    k = wa.shape[-1]
    if k % 4:
        raise InputError(f"2:4 pruning needs the grouped axis to be a multiple of 4, got {k}")
    g = wa.reshape(-1, k // 4, 4)
    order = np.argsort(-g, axis=-1, kind="stable")
    keep = np.zeros_like(g, bool)
    np.put_along_axis(keep, order[..., :2], True, axis=-1)
    return np.moveaxis(keep.reshape(wa.shape), -1, axis)


def parse_prune(spec: str) -> tuple[str, float]:
    """'magnitude:0.5' -> ('magnitude', 0.5); '2:4' -> ('2:4', 0.5)."""
    if spec == "2:4":
        return "2:4", 0.5
    if spec.startswith("magnitude:"):
        try:
            return "magnitude", float(spec.split(":", 1)[1])
        except ValueError:
            pass
    raise InputError(f"--prune takes 'magnitude:<sparsity>' (e.g. magnitude:0.5) or '2:4', "
                     f"got {spec!r}")


def prune(graph: Graph, spec: str, skip: Iterable[str] = ()) -> tuple[Graph, dict]:
    """Prune every linear layer's weight (not in ``skip``) per ``spec``; returns (graph, info)."""
    method, sparsity = parse_prune(spec)
    g = graph.copy()
    skip = set(skip)
    info = {"method": method, "kernel_skips_zeros": False, "layers": []}
    for site in find_linear_sites(g):
        w = g.constants[site.w]
        if site.name in skip or (method == "2:4" and site.k % 4):
            continue
        mask = magnitude_mask(w, sparsity) if method == "magnitude" else mask_2_4(w, 0)
        g.constants[site.w] = np.where(mask, w, 0).astype(w.dtype)
        info["layers"].append({"name": site.name, "sparsity": float(1 - mask.mean())})
    return g, info
