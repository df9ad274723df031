"""What an x86 artifact records about its target, so the runtime can refuse a wrong CPU."""
from __future__ import annotations

from llmc.runtime import cpu

from .build import BuildResult
from .target import host_target

_X86_V3 = ["avx", "avx2", "fma", "f16c"]
_X86_V4 = _X86_V3 + ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"]
# Flags LLVM may use for a given -mcpu; an artifact refuses to load where one is missing.
MCPU_FLAGS: dict[str, list[str]] = {
    "x86-64": [],
    "x86-64-v2": ["sse4_2"],
    "x86-64-v3": _X86_V3,
    "x86-64-v4": _X86_V4,
    "haswell": _X86_V3,
    "skylake": _X86_V3,
    "skylake-avx512": _X86_V4,
    "cascadelake": _X86_V4 + ["avx512_vnni"],
    "icelake-server": _X86_V4 + ["avx512_vnni"],
    "sapphirerapids": _X86_V4 + ["avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile"],
    "znver2": _X86_V3,
    "znver3": _X86_V3,
    "znver4": _X86_V4 + ["avx512_vnni", "avx512_bf16"],
    "znver5": _X86_V4 + ["avx512_vnni", "avx512_bf16"],
}


def required_cpu_flags(mcpu: str) -> list[str]:
    """CPU flags an x86 artifact built for ``mcpu`` needs at run time."""
    if mcpu in MCPU_FLAGS:
        return list(MCPU_FLAGS[mcpu])
    if mcpu == host_target().get("mcpu"):
        return cpu.codegen_flags()
    from llmc.errors import BackendError
    raise BackendError(f"unknown --mcpu {mcpu!r}; use one of {', '.join(MCPU_FLAGS)} or omit it "
                       "for this machine's CPU")


def target_manifest(result: BuildResult) -> dict:
    mcpu = result.target.get("mcpu", "x86-64")
    return {"device": "cpu", "arch": cpu.host_arch(), "tvm_target": result.target, "mcpu": mcpu,
            "required_cpu_flags": required_cpu_flags(mcpu)}
