"""x86 (LLVM) backend: host target detection, CPU schedules, build and in-process run."""
from .build import BuildResult, build, run, set_num_threads
from .manifest import required_cpu_flags, target_manifest
from .target import host_target

set_num_threads()

__all__ = ["BuildResult", "build", "run", "host_target", "set_num_threads", "target_manifest",
           "required_cpu_flags"]
