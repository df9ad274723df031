"""64-bit ARM Linux backend: LLVM aarch64 (NEON) cross-compilation, linked with Debian's
``aarch64-linux-gnu-g++``. The artifact runs on an aarch64 machine (or under qemu-aarch64) with
the aarch64 TVM runtime; on any other machine the loader refuses it (arch mismatch)."""
from .build import CROSS_CXX, TARGET, build, target_manifest

__all__ = ["CROSS_CXX", "TARGET", "build", "target_manifest"]
