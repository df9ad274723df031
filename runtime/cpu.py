"""Host CPU feature detection, so an artifact built for AVX-512 refuses to run without it.

Reads /proc/cpuinfo (Linux); on other systems the check is skipped with no features known.
"""
from __future__ import annotations

import functools
import platform

# Flags that change LLVM's x86 code generation; an artifact records those it was built with.
CODEGEN_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq",
                 "avx512vl", "avx512cd", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")


@functools.lru_cache(maxsize=1)
def host_flags() -> frozenset[str]:
    """The CPU flags of this machine (empty if unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def host_arch() -> str:
    return platform.machine().lower()


def codegen_flags() -> list[str]:
    """The host's flags that matter to code generation (what a host-tuned build relies on)."""
    flags = host_flags()
    return [f for f in CODEGEN_FLAGS if f in flags]
