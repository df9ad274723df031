"""Compilation targets by name, and what an x86 build demands of the CPU that runs it."""
from __future__ import annotations

from llmc.errors import BackendError
from llmc.runtime import cpu

TARGETS = ("x86",)

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


def check_target_name(target: str) -> str:
    if target not in TARGETS:
        raise BackendError(f"unknown target {target!r}; llmc supports {', '.join(TARGETS)}")
    return target


def required_cpu_flags(mcpu: str, host_mcpu: str) -> list[str]:
    """CPU flags an x86 artifact built for ``mcpu`` needs at run time."""
    if mcpu in MCPU_FLAGS:
        return list(MCPU_FLAGS[mcpu])
    if mcpu == host_mcpu:
        return cpu.codegen_flags()
    raise BackendError(f"unknown --mcpu {mcpu!r}; use one of {', '.join(MCPU_FLAGS)} or omit it "
                       "for this machine's CPU")
