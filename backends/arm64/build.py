"""Build an llmc Graph for aarch64 Linux: the x86 backend's Relax assembly and CPU schedules
with an aarch64 LLVM target (NEON: 128-bit vectors, 4 fp32 lanes), exported with a cross linker."""
from __future__ import annotations

import shutil
from typing import Any


from ...errors import BackendError
from ...ir import Graph
from ..relax_builder import build_relax
from ..x86.build import BuildResult, compile_cpu

TARGET: dict = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "generic",
                "mattr": ["+neon"]}
CROSS_CXX = "aarch64-linux-gnu-g++"
NEON_LANES_FP32 = 4


class CrossExecutable:
    """The Relax executable, with ``export_library`` bound to the aarch64 cross linker.

    The pipeline exports every backend's executable the same way (``export_library(path)``);
    wrapping it keeps the cross toolchain the backend's business.
    """

    def __init__(self, executable: Any, cxx: str) -> None:
        self.executable = executable
        self.cxx = cxx

    def export_library(self, path: str, **kwargs: Any) -> Any:
        if shutil.which(self.cxx) is None:
            raise BackendError(f"--target arm64 links with {self.cxx!r}, which is not installed "
                               "(Debian/Ubuntu: apt-get install g++-aarch64-linux-gnu)")
        from tvm.support import cc  # tvm.contrib.cc in older TVM

        kwargs.setdefault("fcompile", cc.cross_compiler(self.cxx))
        return self.executable.export_library(path, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.executable, name)


def build(graph: Graph, *, mattr: list[str] | None = None, cxx: str = CROSS_CXX) -> BuildResult:
    """Compile ``graph`` for 64-bit ARM Linux; ``mattr`` adds LLVM features (e.g. ``+dotprod``)."""
    target = dict(TARGET, mattr=sorted(set(TARGET["mattr"]) | set(mattr or [])))
    rm = build_relax(graph)
    ex, used = compile_cpu(rm.mod, target, NEON_LANES_FP32,
                           f"graph {graph.name!r}: TVM build for aarch64")
    return BuildResult(CrossExecutable(ex, cxx), rm.param_names, rm.input_names,
                       rm.output_names, target, sorted(used), dict(rm.params), used)


def target_manifest(result: BuildResult) -> dict:
    """aarch64 artifacts need an aarch64 machine; NEON is mandatory in ARMv8-A Linux."""
    return {"device": "cpu", "arch": "aarch64", "tvm_target": result.target, "mcpu": "generic",
            "required_cpu_flags": []}
