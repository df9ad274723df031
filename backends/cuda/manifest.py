"""What a CUDA artifact records about its target, so the runtime can refuse a wrong GPU."""
from __future__ import annotations

from llmc.runtime import cpu

from .build import BuildResult


def target_manifest(result: BuildResult) -> dict:
    """device "cuda", the GPU arch the fatbin holds SASS for, and the host CPU arch."""
    return {"device": "cuda", "arch": cpu.host_arch(), "gpu_arch": result.arch,
            "tvm_target": result.target, "kernel_format": "fatbin",
            "schedules": dict(sorted(result.schedules.items()))}
