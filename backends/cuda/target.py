"""CUDA target selection: the GPU architectures llmc builds for and the local GPU's arch."""
from __future__ import annotations

from llmc.errors import BackendError

# Ampere (A100, A10/3090), Ada (L4/4090), Hopper (H100/H200)
ARCHS = ("sm_80", "sm_86", "sm_89", "sm_90")
DEFAULT_ARCH = "sm_80"


def local_gpu_arch() -> str | None:
    """``sm_XY`` of GPU 0 as the TVM runtime sees it, or None when there is no usable GPU.

    Uses only the TVM runtime (no torch, no CUDA Python), so the loader can call it too.
    """
    try:
        import tvm.runtime

        dev = tvm.runtime.cuda(0)
        if not dev.exist:
            return None
        version = str(dev.compute_version)
    except Exception:  # no libcuda / driver, or TVM built without CUDA runtime
        return None
    return "sm_" + version.replace(".", "") if version else None


def resolve_arch(arch: str | None) -> str:
    """The arch to build for: ``arch`` if given (validated), else the local GPU's, else sm_80."""
    if arch is None:
        local = local_gpu_arch()
        return local if local in ARCHS else DEFAULT_ARCH
    a = str(arch).strip().lower()
    if a.isdigit():
        a = "sm_" + a
    if a not in ARCHS:
        raise BackendError(f"unsupported CUDA --arch {arch!r}; llmc builds for "
                           f"{', '.join(ARCHS)} (Ampere, Ada, Hopper)")
    return a


def cuda_target(arch: str) -> dict:
    """TVM target dict for ``arch`` (LLVM host for the VM's shape functions)."""
    return {"kind": "cuda", "arch": arch, "max_threads_per_block": 1024,
            "max_shared_memory_per_block": 49152, "thread_warp_size": 32,
            "host": {"kind": "llvm", "mtriple": "x86_64-unknown-linux-gnu"}}
