"""Compile a decoder-only LLM into one artifact with ``prefill`` and ``decode`` entry points.

Artifact members: ``lib/prefill.so`` and ``lib/decode.so`` (one Relax VM executable each),
``weights.safetensors`` (the union of both entry points' parameters; a parameter both use is
stored once), ``tokenizer.json`` when the checkpoint has one. The manifest keeps the generic
keys of :func:`llmc.pipeline.compile_graph` for the prefill entry (so ``llmc.load`` can still run
it as a plain model) and adds ``kind: "llm"``, ``entry_points`` (library, inputs, outputs,
params of each) and ``llm`` (architecture numbers, max context, KV-cache dtype, eos ids) that
:mod:`llmc.runtime.llm` reads.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import llmc

from .errors import BackendError, LlmcError
from .llm_graph import build_graph

TOKENIZER = "tokenizer.json"
KV_DTYPES = ("float32", "float16", "int8")
WEIGHT_PRECISIONS = ("float32", "int8", "int4")
LLM_TARGETS = ("x86", "cuda")


@dataclass
class LLMCompileOptions:
    """How to compile an LLM (the ``compile-llm`` CLI flags map onto this)."""

    target: str = "x86"                # "x86" | "cuda"
    mcpu: str | None = None
    arch: str | None = None            # cuda: sm_80..sm_90 (default: the local GPU's, else sm_80)
    opt_level: str = "O3"
    max_context: int | None = None     # default: min(config max positions, 2048)
    kv_dtype: str = "float32"          # "float32" | "float16"
    weights: str = "float32"           # "float32" | "int8" (per-channel) | "int4" (group-wise)
    # weight group size along K (32, 64, 128; smaller per layer if K needs it). int4: None
    # means 128; int8: None means one scale per output channel, a size makes it group-wise
    group_size: int | None = None
    tuning_db: str | None = None       # x86: an `llmc tune` directory (the pipeline's option)
    # x86: kernels that are small at batch 1 (norms, RoPE, adds: not the GEMVs or attention)
    # run on one thread; False parallelizes every kernel (for comparisons)
    serial_small_kernels: bool = True


def _entry(graph, name: str, options: LLMCompileOptions, progress: Callable[[str], None]):
    """Passes + backend build of one entry graph -> (library bytes, result, graph)."""
    from llmc.backends import get_backend
    from llmc.passes import run_passes

    from .pipeline import _backend_options, tensor_entry

    backend = get_backend(options.target)
    t0 = time.perf_counter()
    graph.verify()
    graph, _report = run_passes(graph, level=options.opt_level)
    progress(f"{name}: {len(graph.nodes)} nodes after passes, building")
    extra = {"small_dims": ("batch",)} if options.target == "x86" and \
        options.serial_small_kernels else {}
    result = backend.build(graph, **_backend_options(options, graph), **extra)
    with tempfile.TemporaryDirectory(prefix="llmc-llm-") as tmp:
        lib_path = os.path.join(tmp, f"{name}.so")
        try:
            result.executable.export_library(lib_path)
        except Exception as exc:  # TVM / toolchain errors
            raise BackendError(f"linking the {name} library failed: {exc}") from None
        with open(lib_path, "rb") as fh:
            lib = fh.read()
    params = getattr(result, "params", None) or {}
    params = {p: params[p] if p in params else graph.constants[p] for p in result.param_names}
    entry = {"library": f"lib/{name}.so",
             "inputs": [tensor_entry(graph, n) for n in graph.inputs],
             "outputs": [tensor_entry(graph, n) for n in graph.outputs],
             "params": list(result.param_names), "kernels": len(result.kernels),
             "build_seconds": round(time.perf_counter() - t0, 3)}
    progress(f"{name}: built in {entry['build_seconds']:.1f} s, {entry['kernels']} kernels")
    return lib, entry, params, backend, result


def compile_llm(spec, options: LLMCompileOptions | None = None,
                progress: Callable[[str], None] | None = None) -> tuple[dict, dict[str, bytes]]:
    """Build prefill + decode for ``spec`` (an :class:`llmc.frontends.hf.LLMSpec`).

    Returns ``(manifest, members)`` ready for :func:`llmc.runtime.format.write_artifact`.
    """
    from llmc.runtime.format import WEIGHTS

    from .pipeline import _safetensors_bytes

    options = options or LLMCompileOptions()
    progress = progress or (lambda _msg: None)
    if options.kv_dtype not in KV_DTYPES:
        raise LlmcError(f"KV-cache dtype {options.kv_dtype!r} is not supported; use one of "
                        f"{', '.join(KV_DTYPES)}")
    if options.weights not in WEIGHT_PRECISIONS:
        raise LlmcError(f"weight precision {options.weights!r} is not available for LLMs; use "
                        f"one of {', '.join(WEIGHT_PRECISIONS)} (weight-only: activations "
                        "stay float32)")
    if options.target not in LLM_TARGETS:
        raise LlmcError(f"target {options.target!r} cannot run LLMs; use one of "
                        f"{', '.join(LLM_TARGETS)}")
    if options.target == "cuda" and options.weights != "float32":
        raise LlmcError(f"{options.weights} weights are x86-only for now (the CUDA backend has "
                        "no weight-only quantized kernels); use --weights float32 on cuda")
    if options.group_size is not None and options.weights == "float32":
        raise LlmcError(f"a weight group size ({options.group_size}) needs int8 or int4 weights "
                        "(--weights int8|int4)")
    max_ctx = options.max_context or min(spec.max_position, 2048)
    if spec.sliding_window and max_ctx > spec.sliding_window:
        raise LlmcError(f"{spec.source}: max context {max_ctx} exceeds the model's sliding "
                        f"window ({spec.sliding_window}); llmc compiles full attention, which is "
                        "exact only within the window: use --max-context <= "
                        f"{spec.sliding_window}")
    if spec.arch == "gpt2" and max_ctx > spec.max_position:
        raise LlmcError(f"max context {max_ctx} exceeds GPT-2's {spec.max_position} learned "
                        "positions")
    t0 = time.perf_counter()
    members: dict[str, bytes] = {}
    weights: dict[str, np.ndarray] = {}
    entries: dict[str, dict] = {}
    backend = result = None
    by_digest: dict[str, str] = {}
    quant_layers: list = []
    for kind in ("prefill", "decode"):
        progress(f"{kind}: building the graph")
        graph = build_graph(spec, kind, kv_dtype=options.kv_dtype, max_position=max_ctx)
        if options.weights == "int4":
            from llmc.passes.int4 import quantize_int4

            graph, qinfo = quantize_int4(graph, group_size=options.group_size or 128)
            quant_layers = qinfo["layers"]
        elif options.weights == "int8":
            from llmc.passes.int8_weight_only import quantize_int8_wo

            graph, qinfo = quantize_int8_wo(graph, group_size=options.group_size)
            quant_layers = qinfo["layers"]
        lib, entry, params, backend, result = _entry(graph, kind, options, progress)
        renamed = []
        for p in entry["params"]:
            arr = params[p]
            key = _digest(arr)
            if key in by_digest:          # the same array under another name: store it once
                renamed.append(by_digest[key])
                continue
            name = p if p not in weights else f"{kind}.{p}"
            weights[name] = arr
            by_digest[key] = name
            renamed.append(name)
        entry["params"] = renamed
        members[entry["library"]] = lib
        entries[kind] = entry
    members[WEIGHTS] = _safetensors_bytes(weights)
    if spec.tokenizer_json:
        members[TOKENIZER] = bytes(spec.tokenizer_json)
    pre = entries["prefill"]
    manifest = {
        "llmc_version": llmc.__version__,
        "kind": "llm",
        "model_name": spec.model_type or spec.arch,
        "target": {"name": options.target, **backend.target_manifest(result)},
        "inputs": pre["inputs"], "outputs": pre["outputs"], "params": pre["params"],
        "library": pre["library"],
        "entry_points": entries,
        "opt_level": options.opt_level,
        "llm": {**spec.config_dict(), "max_context": int(max_ctx), "kv_dtype": options.kv_dtype,
                "weights": options.weights,
                "quantized_layers": sum(1 for q in quant_layers if q["precision"] != "float32"),
                "layer_precisions": {q["name"]: q["precision"] for q in quant_layers},
                "tokenizer": TOKENIZER if spec.tokenizer_json else None},
        "compile_seconds": round(time.perf_counter() - t0, 3),
    }
    return manifest, members


def _digest(a: np.ndarray) -> str:
    """Content key of a parameter (dtype, shape, bytes): equal arrays are stored once."""
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def compile_llm_to_file(source, output: str | os.PathLike,
                        options: LLMCompileOptions | None = None,
                        progress: Callable[[str], None] | None = None) -> dict:
    """Import ``source`` (directory, .gguf or an LLMSpec), compile it and write ``output``."""
    from llmc.frontends.hf import LLMSpec, load_hf
    from llmc.runtime.format import write_artifact

    spec = source if isinstance(source, LLMSpec) else load_hf(source)
    manifest, members = compile_llm(spec, options, progress)
    write_artifact(os.fspath(output), manifest, members)
    return manifest
