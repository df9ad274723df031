"""The LLVM target for the machine llmc runs on (or a named CPU)."""
from __future__ import annotations

import os

import tvm

GENERIC = {"kind": "llvm", "mcpu": "x86-64", "mtriple": "x86_64-unknown-linux-gnu"}


def host_target(mcpu: str | None = None) -> dict:
    """TVM target dict for this host: LLVM's detected CPU (e.g. znver4 -> AVX-512 code).

    ``mcpu`` overrides the detected CPU (cross-compiling for another x86 machine). Falls back to
    generic x86-64 when LLVM cannot name the host CPU.
    """
    codegen = tvm.target.codegen
    try:
        triple = str(codegen.llvm_get_system_triple()) or GENERIC["mtriple"]
        parts = triple.split("-")
        if len(parts) == 4 and parts[1] not in ("pc", "unknown"):  # e.g. conda's vendor field
            triple = "-".join([parts[0], "unknown", parts[2], parts[3]])
    except Exception:  # pragma: no cover - very old/odd LLVM builds
        triple = GENERIC["mtriple"]
    if mcpu is None:
        try:
            mcpu = str(codegen.llvm_get_system_cpu())
        except Exception:  # pragma: no cover
            mcpu = ""
        if not mcpu or mcpu == "generic":
            mcpu = GENERIC["mcpu"]
    return {"kind": "llvm", "mcpu": mcpu, "mtriple": triple, "num-cores": os.cpu_count() or 1}


def has_avx512(target: dict) -> bool:
    """Whether the target CPU has AVX-512F (selects the 16-lane vector width)."""
    try:
        t = tvm.target.Target(target)
        return bool(tvm.target.codegen.target_has_features("avx512f", t))
    except Exception:
        return False


def vector_lanes(target: dict, dtype_bits: int = 32) -> int:
    """Lanes of the widest vector register for ``dtype_bits`` elements."""
    width = 512 if has_avx512(target) else 256
    return max(1, width // dtype_bits)
