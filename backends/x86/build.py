"""Build an llmc Graph for x86 (LLVM): Relax module, CPU schedules, ``tvm.compile``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import tvm
from tvm import relax

from ...errors import BackendError
from ...ir import Graph
from ..relax_builder import build_relax
from ..relax_pipeline import vm_lowering
from .schedule import schedule_module
from .target import host_target, vector_lanes


@dataclass
class BuildResult:
    """What the artifact writer needs: the executable and how to call its ``main``."""

    executable: object          # relax VMExecutable; .export_library(path)
    param_names: list[str]      # constants passed to main after the inputs, in this order
    input_names: list[str]
    output_names: list[str]
    target: dict
    kernels: list[str]          # PrimFuncs built
    params: dict[str, np.ndarray] = field(default_factory=dict)  # arrays actually passed
    schedules: dict[str, str] = field(default_factory=dict)      # kernel -> schedule used
    launches: int = 0           # kernel calls per run of main (one per call_tir)


@tvm.transform.module_pass(opt_level=0, name="LlmcMarkNoAlias")
def _mark_noalias(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Give VMShapeLower's shape_func the ``tirx.noalias`` attribute the kernels have.

    Measured: one PrimFunc without it in the LLVM module makes TVM drop the noalias facts of
    every kernel, and the packed matmul then stores its register tile to memory after each FMA
    (2.5x slower). A shape function has a single buffer, so the attribute is trivially true.
    """
    for gv, func in list(mod.functions.items()):
        if isinstance(func, tvm.tirx.PrimFunc) and not (func.attrs and
                                                         "tirx.noalias" in func.attrs):
            mod[gv] = func.with_attr("tirx.noalias", True)
    return mod


def _relax_pipeline() -> tvm.transform.Pass:
    """The shared Relax finalization plus the noalias fix for the shape function."""
    return vm_lowering(_mark_noalias)


def _codegen_target(target: dict) -> dict:
    """The target given to LLVM: ``target`` plus reassociable float math.

    Measured: without it LLVM keeps every float reduction (softmax's row sum, LayerNorm's
    mean and variance) as one scalar add chain, latency-bound; with it those loops vectorize
    (LayerNorm 5x, attention 12% faster in MiniLM). Only the order of a sum changes: no
    NaN/inf assumptions (``fast-math-nnan``/``ninf`` stay off). The manifest keeps ``target``.
    """
    return {**target, "fast-math-reassoc": True}


def compile_cpu(mod: tvm.IRModule, target: dict, lanes: int, what: str, tuned=None,
                small_dims: Sequence[str] = ()):
    """Schedule every kernel for a CPU and ``tvm.compile`` the module: (executable, schedules).

    Shared by the x86, arm64 and systolic (host part) backends; any TVM failure becomes a
    BackendError that says ``what`` was being built.
    """
    try:
        # every op is already a call_tir except R.reshape, which the VM lowers to a view
        mod, used = schedule_module(mod, lanes, tuned, small_dims)
        with tvm.transform.PassContext(opt_level=3):
            ex = tvm.compile(mod, tvm.target.Target(_codegen_target(target)),
                             relax_pipeline=_relax_pipeline())
    except BackendError:
        raise
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        raise BackendError(f"{what} failed: {msg[-1][:400] if msg else type(exc).__name__}") from exc
    return ex, used


def build(graph: Graph, *, mcpu: str | None = None, tuning_db: str | None = None,
          small_dims: Sequence[str] = ()) -> BuildResult:
    """Compile ``graph`` for this host's CPU (or ``mcpu``) once, for all values of its symbols.

    ``tuning_db``: a `llmc tune` directory; its records replace a kernel's default schedule
    where they measured faster for this target. ``small_dims``: symbols that stay small at
    run time (an LLM's batch): kernels that are small when they are 1 run single-threaded.
    """
    target = host_target(mcpu)
    rm = build_relax(graph, small_dims=small_dims)
    tuned = None
    if tuning_db:
        from .tune import TunedSchedules
        tuned = TunedSchedules(tuning_db, target).lookup
    ex, used = compile_cpu(rm.mod, target, vector_lanes(target),
                           f"graph {graph.name!r}: TVM build for {target['mcpu']}", tuned,
                           small_dims)
    return BuildResult(ex, rm.param_names, rm.input_names, rm.output_names, target,
                       sorted(used), dict(rm.params), used, len(rm.kernels))


def set_num_threads(n: int | None = None) -> int:
    """Use all cores: TVM's runtime defaults to half of hardware_concurrency.

    ``n`` defaults to $TVM_NUM_THREADS when the user set it, else the core count.
    """
    env = os.environ.get("TVM_NUM_THREADS", "")
    n = n or (int(env) if env.isdigit() and int(env) > 0 else 0) or os.cpu_count() or 1
    os.environ["TVM_NUM_THREADS"] = str(n)
    cfg = tvm.get_global_func("runtime.config_threadpool", allow_missing=True)
    if cfg is not None:
        cfg(0, n)
    return n


def run(result: BuildResult, inputs: dict[str, np.ndarray],
        params: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """In-process execution (tests): relax VirtualMachine on tvm.cpu()."""
    dev = tvm.cpu()
    vm = relax.VirtualMachine(result.executable, dev)
    params = dict(result.params if params is None else {**result.params, **params})
    args = []
    for name in result.input_names:
        if name not in inputs:
            raise BackendError(f"missing input {name!r}; the model takes {result.input_names}")
        args.append(tvm.runtime.tensor(_contig(inputs[name]), dev))
    for name in result.param_names:
        if name not in params:
            raise BackendError(f"missing parameter {name!r}")
        args.append(tvm.runtime.tensor(_contig(params[name]), dev))
    out = vm["main"](*args)
    return {n: out[i].numpy() for i, n in enumerate(result.output_names)}


def _contig(a: np.ndarray) -> np.ndarray:
    """C-contiguous without promoting 0-d arrays to 1-d (np.ascontiguousarray does)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")
