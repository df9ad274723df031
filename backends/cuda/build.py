"""Build an llmc Graph for an NVIDIA GPU: Relax module, dlight/llmc schedules, nvcc fatbin."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from ...errors import BackendError
from ...ir import Graph
from ..relax_builder import build_relax
from ..relax_pipeline import vm_lowering
from . import cubin
from .schedule import schedule_module
from .target import cuda_target, resolve_arch

# dtypes whose models llmc builds for CUDA today; int8/int4 weight-only needs the precision
# lowering pass (not built yet)
SUPPORTED_FLOAT = ("float32", "float16", "bfloat16")


class CudaExecutable:
    """The Relax executable plus its kernels' fatbins: ``export_library`` embeds the binaries.

    Everything else is forwarded to TVM's executable, so code that handles x86 results works.
    """

    def __init__(self, executable, binaries: dict[str, bytes]) -> None:
        self._ex = executable
        self.binaries = binaries

    def export_library(self, path: str, **kwargs):
        """Write the shared library with the CUDA kernels as fatbin (no CUDA source inside)."""
        kwargs.setdefault("fpack_imports", cubin.make_pack_imports(self.binaries))
        return self._ex.export_library(path, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._ex, name)


@dataclass
class BuildResult:
    """What the artifact writer needs (as the x86 backend's) plus the CUDA specifics."""

    executable: CudaExecutable
    param_names: list[str]
    input_names: list[str]
    output_names: list[str]
    target: dict
    kernels: list[str]
    params: dict[str, np.ndarray] = field(default_factory=dict)
    schedules: dict[str, str] = field(default_factory=dict)   # kernel -> rule used
    arch: str = "sm_80"
    cuda_sources: list[str] = field(default_factory=list)     # generated CUDA C++ (inspection)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fatbins(self) -> list[bytes]:
        return list(self.executable.binaries.values())

    def ptx(self) -> str:
        """PTX of all kernels (compiled on demand with nvcc; for tests and inspection)."""
        return "\n".join(cubin.compile_ptx(src, self.arch) for src in self.cuda_sources)


def _relax_pipeline() -> tvm.transform.Pass:
    """The shared Relax finalization (no CPU-specific extras)."""
    return vm_lowering()


def check_dtypes(graph: Graph) -> None:
    """Refuse quantized graphs clearly: int8/int4 weight-only GPU kernels are not built yet."""
    for name, arr in graph.constants.items():
        users = graph.consumers().get(name, [])
        if arr.dtype.kind in "iu" and any(u.op == "matmul" for u in users) and arr.ndim == 2 \
                and arr.itemsize == 1:
            raise BackendError(f"constant {name!r} is an {arr.dtype} matmul weight: int8/int4 "
                               "weight-only precision is not supported by --target cuda yet; "
                               "compile the fp16/bf16/fp32 model")


def c_safe_names(graph: Graph) -> Graph:
    """A copy of ``graph`` whose inputs and constants have C identifier names.

    Relax parameters keep the graph's value names, and the CUDA C codegen prints them as kernel
    parameter names (``/bert/embeddings/Expand_output_0_ptr`` does not compile); LLVM does not
    care. Inputs are passed by position, so only the names inside the library change; constants
    are stored under their new names (the BuildResult's param_names).
    """
    import re

    bad = [n for n in list(graph.inputs) + list(graph.constants)
           if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
    if not bad:
        return graph
    taken = set(graph.types) | set(graph.constants)
    ren: dict[str, str] = {}
    for n in bad:
        base = re.sub(r"\W", "_", n)
        base = base if re.match(r"[A-Za-z_]", base) else "v_" + base
        new, i = base, 0
        while new in taken:
            i += 1
            new = f"{base}_{i}"
        taken.add(new)
        ren[n] = new
    g = graph.copy()
    r = lambda v: ren.get(v, v)  # noqa: E731
    g.inputs = [r(v) for v in g.inputs]
    g.outputs = [r(v) for v in g.outputs]
    g.types = {r(k): v for k, v in g.types.items()}
    g.constants = {r(k): v for k, v in g.constants.items()}
    for node in g.nodes:
        node.inputs = [r(v) for v in node.inputs]
    return g


def build(graph: Graph, *, arch: str | None = None) -> BuildResult:
    """Compile ``graph`` for an NVIDIA GPU of ``arch`` (sm_80/86/89/90; default: the local GPU's,
    sm_80 when there is none) once, for all values of its symbols."""
    arch = resolve_arch(arch)
    check_dtypes(graph)
    target = cuda_target(arch)
    tgt = tvm.target.Target(target)
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    # constant weights stay [K, N]: the CPU panel packing does not help a GPU matmul
    rm = build_relax(c_safe_names(graph), pack_weights=False)
    secs["relax"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        mod, used = schedule_module(rm.mod, tgt)
        secs["schedule"] = time.perf_counter() - t0
        bad = sorted(k for k, v in used.items() if v == "none")
        if bad:
            raise BackendError(f"graph {graph.name!r}: no GPU schedule fits kernel(s) {bad[:5]}")
        t0 = time.perf_counter()
        with cubin.nvcc_callback(arch) as jit, tvm.transform.PassContext(opt_level=3):
            ex = tvm.compile(mod, tgt, relax_pipeline=_relax_pipeline())
        secs["codegen"] = time.perf_counter() - t0
    except BackendError:
        raise
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        raise BackendError(f"graph {graph.name!r}: TVM build for CUDA {arch} failed: "
                           f"{msg[-1][:400] if msg else type(exc).__name__}") from exc
    t0 = time.perf_counter()
    binaries: dict[str, bytes] = dict(jit)  # compiled during codegen (CUDA runtime present)
    sources = list(binaries)
    for m in cubin.cuda_source_modules(ex.mod):
        src = str(m.inspect_source("cuda") or m.inspect_source())
        if src and src not in binaries:
            binaries[src] = cubin.compile_fatbin(src, arch)
            sources.append(src)
    secs["nvcc"] = time.perf_counter() - t0
    if not binaries and rm.kernels:
        raise BackendError(f"graph {graph.name!r}: the CUDA build produced no device code")
    # inputs/outputs by position: keep the graph's own names for callers
    return BuildResult(CudaExecutable(ex, binaries), rm.param_names, list(graph.inputs),
                       list(graph.outputs), target, sorted(used), dict(rm.params), used, arch,
                       sources, secs)


def run(result: BuildResult, inputs: dict[str, np.ndarray],
        params: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """In-process execution on GPU 0 (tests on a GPU machine): export, load, Relax VM."""
    import os
    import tempfile

    dev = tvm.runtime.cuda(0)
    if not dev.exist:
        raise BackendError("no CUDA GPU on this machine; the CUDA build can be saved and run "
                           "on a machine with one")
    with tempfile.TemporaryDirectory(prefix="llmc-cuda-") as tmp:
        path = os.path.join(tmp, "model.so")
        result.executable.export_library(path)
        lib = tvm.runtime.load_module(path)
    vm = relax.VirtualMachine(lib, dev)
    params = dict(result.params if params is None else {**result.params, **params})
    args = []
    for name in result.input_names:
        if name not in inputs:
            raise BackendError(f"missing input {name!r}; the model takes {result.input_names}")
        args.append(tvm.runtime.tensor(np.ascontiguousarray(inputs[name]), dev))
    for name in result.param_names:
        args.append(tvm.runtime.tensor(np.ascontiguousarray(params[name]), dev))
    out = vm["main"](*args)
    return {n: out[i].numpy() for i, n in enumerate(result.output_names)}
