"""Lowered precision: fp16 / bf16 linear layers, and the one entry point for every mode.

fp16 / bf16 (:func:`to_half`): each linear layer's weight is stored in half precision and its
activation is cast to half on the way in; the matmul accumulates in fp32 (the backend's
matmul lowering accumulates half inputs in float32) and its result is cast back to fp32.
Everything else, in particular the numerically sensitive ops (softmax, norms, reductions,
attention), stays fp32. ``half_activations=False`` is not offered: that is the int4 path.

:func:`apply_precision` is what the compile pipeline calls (after the graph-cleanup passes,
before fusion): prune, then lower the precision, then, under an accuracy budget, put the most
sensitive layers back to fp32 until the budget holds on the calibration data.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from llmc.accuracy import Budget, compare_runs
from llmc.calibration import Batch, load_batches
from llmc.dtypes import to_numpy
from llmc.errors import InputError
from llmc.interpreter import run_reference
from llmc.ir import Graph, Node, TensorType

from .quantize import drop_unused_constants, find_linear_sites

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int4")
HALF = {"fp16": "float16", "bf16": "bfloat16", "float16": "float16", "bfloat16": "bfloat16"}


def to_half(graph: Graph, dtype: str = "float16", skip: Iterable[str] = ()
            ) -> tuple[Graph, dict]:
    """Run every linear layer (not in ``skip``) in ``dtype`` with fp32 accumulation."""
    dt = HALF[dtype]
    g = graph.copy()
    skip = set(skip)
    sites = {id(s.matmul): s for s in find_linear_sites(g)}
    nodes: list[Node] = []
    info = {"layers": []}
    for node in g.nodes:
        site = sites.get(id(node))
        if site is None or site.name in skip:
            nodes.append(node)
            if site is not None:
                info["layers"].append({"name": site.name, "precision": "float32"})
            continue
        x, w = node.inputs
        xt, out = g.types[x], node.outputs[0]
        xh = g.fresh_name(f"{site.name}.x_{dt}")
        g.types[xh] = TensorType(dt, xt.shape)
        wh = g.add_constant(g.constants[w].astype(to_numpy(dt)), f"{site.name}.w_{dt}")
        yh = g.fresh_name(f"{site.name}.y_{dt}")
        g.types[yh] = TensorType(dt, g.types[out].shape)
        nodes.append(Node("cast", [x], [xh], {"to": dt}, f"{site.name}.cast_in"))
        nodes.append(Node("matmul", [xh, wh], [yh], {}, site.name))
        nodes.append(Node("cast", [yh], [out], {"to": "float32"}, f"{site.name}.cast_out"))
        info["layers"].append({"name": site.name, "precision": dt})
    g.nodes = nodes
    drop_unused_constants(g)
    return g, info


def _lower(graph: Graph, precision: str, batches, calibrator: str, smoothquant: bool,
           alpha: float, group_size: int, skip: set, plan_cache: dict) -> tuple[Graph, dict]:
    if precision in ("fp16", "bf16"):
        return to_half(graph, precision, skip)
    if precision == "int4":
        from .int4 import quantize_int4
        return quantize_int4(graph, group_size, skip)
    if precision == "int8":
        from .quantize import apply_int8_plan, plan_int8
        if "int8" not in plan_cache:
            plan_cache["int8"] = plan_int8(graph, batches, calibrator, smoothquant, alpha)
        sites, layers = plan_cache["int8"]
        g = graph.copy()
        # the plan's sites refer to graph's nodes; re-find them in the copy by name
        from .quantize import find_int8_sites
        by_name = {s.name: s for s in find_int8_sites(g)}
        return apply_int8_plan(g, [by_name[s.name] for s in sites], layers, skip)
    raise InputError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")


def _sensitivity(graph: Graph, precision: str, info: dict, plan_cache: dict) -> list[str]:
    """Layer names, most sensitive first (local output error of the lowered layer)."""
    if precision == "int8":
        return [l.name for l in sorted(plan_cache["int8"][1], key=lambda l: -l.local_error)]
    errs = []
    for site in find_linear_sites(graph):
        w = graph.constants[site.w].astype(np.float32)
        if precision == "int4":
            from llmc.ops.quant import dequant_int4

            from .int4 import quantize_weight_int4
            gs = next((c for c in (128, 64, 32) if site.k % c == 0), None)
            if gs is None:
                continue
            wq = dequant_int4(*quantize_weight_int4(w, gs), gs, site.n)
        else:
            wq = w.astype(to_numpy(HALF[precision])).astype(np.float32)
        errs.append((float(np.linalg.norm(wq - w) / max(np.linalg.norm(w), 1e-30)), site.name))
    for rec in info.get("layers", []):
        rec.setdefault("local_rel_error", dict((n, e) for e, n in errs).get(rec["name"]))
    return [n for _, n in sorted(errs, reverse=True)]


def apply_precision(graph: Graph, precision: str = "fp32", calib: Any = None, *,
                    calibrator: str = "minmax", smoothquant: bool = False, alpha: float = 0.5,
                    group_size: int = 128, prune: str | None = None,
                    accuracy_budget: str | Budget | None = None,
                    skip: Sequence[str] = ()) -> tuple[Graph, dict]:
    """Lower ``graph``'s precision; returns (new graph, info for the accuracy report).

    ``calib``: .npz path, a batch dict or an iterable of them (needed for int8 and for a
    budget). ``prune``: "magnitude:0.5" or "2:4" (applied first, to the fp32 weights).
    ``accuracy_budget``: e.g. "cosine:0.999"; layers are put back to fp32, most sensitive
    first (doubling the count each step), until the budget holds on the calibration batches.
    """
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    info: dict = {"precision": precision, "notes": []}
    batches: list[Batch] | None = load_batches(calib, graph) if calib is not None else None
    if prune:
        from .prune import prune as _prune
        graph, pinfo = _prune(graph, prune)
        info["prune"] = pinfo
        info["notes"].append("pruned weights are stored dense: no x86 kernel skips the zeros; "
                             "only the compressed size shrinks")
    if precision == "fp32":
        return graph, info
    if precision == "int8" and batches is None:
        raise InputError("int8 needs calibration data: pass --calib data.npz (or calib= in the "
                         "API) with one or more batches of the model's inputs")
    cache: dict = {}
    skip = set(skip)
    if precision == "int8":
        # the x86 blocked fp32 conv (NCHW16c) beats the int8 im2col conv kernel (ResNet-style
        # CNN b8: 0.48 vs 1.47 ms): convs the layout pass will block stay float32
        from .layout import blocked_convs
        fast_fp32 = blocked_convs(graph)
        skip |= set(fast_fp32)
        if fast_fp32:
            info["notes"].append(f"{len(fast_fp32)} conv(s) kept float32: on x86 the blocked "
                                 "fp32 conv kernel is faster than the int8 conv kernel")
    out, linfo = _lower(graph, precision, batches, calibrator, smoothquant, alpha, group_size,
                        skip, cache)
    info.update(linfo)
    if accuracy_budget is None:
        if precision == "int8":
            _sensitivity(graph, precision, info, cache)
        return out, info
    if batches is None:
        raise InputError("--accuracy-budget needs calibration data (--calib)")
    budget = Budget.parse(accuracy_budget)
    ref = [run_reference(graph, b) for b in batches]
    order = [n for n in _sensitivity(graph, precision, info, cache) if n not in skip]
    kept: list[str] = []
    count = 0
    while True:
        metrics = compare_runs(ref, [run_reference(out, b) for b in batches])
        if budget.ok(metrics) or count >= len(order):
            break
        count = min(len(order), max(1, 2 * count))
        kept = order[:count]
        out, linfo = _lower(graph, precision, batches, calibrator, smoothquant, alpha,
                            group_size, skip | set(kept), cache)
        info.update(linfo)
    info["budget"] = {"spec": str(budget), "met": budget.ok(metrics), "kept": kept,
                      "metrics": metrics}
    return out, info
