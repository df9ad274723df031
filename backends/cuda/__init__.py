"""CUDA backend: dlight + llmc GPU schedules, kernels compiled to fatbin by nvcc at build time."""
from .build import SUPPORTED_FLOAT, BuildResult, build, run
from .cubin import compile_fatbin, compile_ptx
from .manifest import target_manifest
from .target import ARCHS, DEFAULT_ARCH, local_gpu_arch, resolve_arch

__all__ = ["ARCHS", "DEFAULT_ARCH", "SUPPORTED_FLOAT", "BuildResult", "build", "run",
           "compile_fatbin", "compile_ptx", "local_gpu_arch", "resolve_arch", "target_manifest"]
