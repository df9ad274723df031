"""The compile driver: verified IR -> passes -> backend build -> artifact members."""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import llmc

from . import dims as D
from .errors import BackendError
from .ir import Graph


@dataclass
class CompileOptions:
    """Everything that decides how a graph is compiled (the CLI's flags map onto this)."""

    target: str = "x86"
    mcpu: str | None = None
    arch: str | None = None              # cuda: sm_80 | sm_86 | sm_89 | sm_90 (default: local GPU's or sm_80)
    opt_level: str = "O3"
    passes: list[str] | None = None      # explicit pass list; overrides opt_level
    disable_passes: list[str] = field(default_factory=list)
    verify_passes: bool = False          # run the IR verifier after every pass (tests do)
    plan_dims: dict[str, int] | None = None  # symbol values for the memory plan (default 1)
    precision: str = "fp32"              # fp32 | fp16 | bf16 | int8 | int4
    calib: Any = None                    # calibration data: .npz path, batch dict or iterable
    calibrator: str = "minmax"           # int8 activations: minmax | percentile | entropy
    smoothquant: bool = False
    group_size: int = 128                # int4 weight groups
    prune: str | None = None             # "magnitude:0.5" | "2:4"
    accuracy_budget: str | None = None   # e.g. "cosine:0.999": layers that break it stay fp32
    systolic_config: str | None = None   # systolic: tpu-like | edge | FILE.json
    tuning_db: str | None = None         # x86: `llmc tune` directory; faster tuned kernels replace defaults


def _optimize(graph: Graph, options: CompileOptions):
    """Graph passes, with precision lowering between the cleanup passes and fusion.

    Quantization must see plain matmuls (before ``fuse``) in a cleaned-up graph (after
    folding), so a lowered compile runs the level's passes up to ``fuse``, then
    ``apply_precision``, then ``fuse``.
    """
    from llmc.passes import level_passes, run_passes

    names = list(options.passes) if options.passes is not None else level_passes(options.opt_level)
    names = [n for n in names if n not in set(options.disable_passes)]
    kw = dict(verify=options.verify_passes, bindings=options.plan_dims)
    if (options.precision in ("fp32", None) or options.target == "systolic") and not options.prune:
        graph, report = run_passes(graph, passes=names, **kw)
        return graph, report, None
    from llmc.passes.precision import apply_precision

    # layout (blocked convs) and fuse run after precision lowering: the quantizer rewrites
    # plain matmuls and convs, and what stays float32 is then blocked / fused as usual
    after = [n for n in names if n in ("layout", "fuse")]
    before = [n for n in names if n not in after]
    graph, report = run_passes(graph, passes=before, **kw)
    fp32_graph = graph
    graph, info = apply_precision(graph, options.precision, options.calib,
                                  calibrator=options.calibrator, smoothquant=options.smoothquant,
                                  group_size=options.group_size, prune=options.prune,
                                  accuracy_budget=options.accuracy_budget)
    info = dict(info)
    info["fp32_graph"] = fp32_graph
    info["calib_source"] = options.calib
    if after:
        graph, fuse_report = run_passes(graph, passes=after, **kw)
        report.rows.extend(fuse_report.rows)
    return graph, report, info


def _backend_options(options: CompileOptions, graph: Graph) -> dict:
    """The target-specific subset of the options, as the backend's ``build`` takes them."""
    if options.target == "x86":
        return {"mcpu": options.mcpu, **({"tuning_db": options.tuning_db} if options.tuning_db else {})}
    if options.target == "cuda":
        return {"arch": options.arch}
    if options.target == "systolic":
        from llmc.backends.systolic.cli import backend_options
        from llmc.calibration import load_batches

        calibration = load_batches(options.calib, graph) if options.calib is not None else None
        return backend_options(options.systolic_config, options.precision, calibration,
                               options.calibrator)
    return {}


def tensor_entry(graph: Graph, name: str) -> dict:
    """A graph input/output as the manifests record it (symbolic dims as text)."""
    ty = graph.types[name]
    return {"name": name, "dtype": ty.dtype,
            "shape": [d if isinstance(d, int) else D.dim_str(d) for d in ty.shape]}


def compile_graph(graph: Graph, options: CompileOptions):
    """Build ``graph`` for ``options.target`` and package it as an Artifact."""
    from llmc.runtime.format import WEIGHTS

    from .api import Artifact

    from llmc.passes import plan_memory, run_passes

    from llmc.backends import get_backend

    backend = get_backend(options.target)
    t0 = time.perf_counter()
    graph.verify()
    from llmc.passes.layout import layout_options

    with layout_options(options.target):  # the layout pass blocks convs for x86 only
        graph, report, precision_info = _optimize(graph, options)
    plan = plan_memory(graph, options.plan_dims)
    result = backend.build(graph, **_backend_options(options, graph))
    build_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="llmc-build-") as tmp:
        lib_path = os.path.join(tmp, "model.so")
        try:
            result.executable.export_library(lib_path)
        except Exception as exc:  # TVM/compiler toolchain errors
            raise BackendError(f"linking the compiled library failed: {exc}") from None
        with open(lib_path, "rb") as fh:
            library = fh.read()

    params = getattr(result, "params", None) or {p: graph.constants[p] for p in result.param_names}
    weights = _safetensors_bytes({p: params[p] for p in result.param_names})
    manifest = {
        "llmc_version": llmc.__version__,
        "model_name": graph.name,
        "target": {"name": options.target, **backend.target_manifest(result)},
        "inputs": [tensor_entry(graph, n) for n in graph.inputs],
        "outputs": [tensor_entry(graph, n) for n in graph.outputs],
        "params": list(result.param_names),
        "library": "lib/model.so",
        "opt_level": options.opt_level if options.passes is None else None,
        "passes": [row.name for row in report.rows],
        "kernels": list(result.kernels),
        "nodes": len(graph.nodes),
        "memory_plan": {"arena_bytes": plan.arena_bytes, "intermediate_bytes": plan.total_bytes,
                        "at": {k: int(v) for k, v in plan.bindings.items()}},
        "compile_seconds": round(time.perf_counter() - t0, 3),
        "build_seconds": round(build_s, 3),
    }
    members = {"lib/model.so": library, WEIGHTS: weights}
    if report.rows:
        report.rows[-1].kernels = len(result.kernels)
    if precision_info is not None:
        manifest["precision"] = {"mode": options.precision, "calibrator": options.calibrator,
                                 "smoothquant": options.smoothquant, "prune": options.prune,
                                 "accuracy_budget": options.accuracy_budget}
    return Artifact(manifest, members, graph=graph, report=report, precision_info=precision_info)


def _safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.require(v, requirements="C") for k, v in arrays.items()})
