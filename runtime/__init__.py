"""llmc's thin runtime: load an artifact and run it with TVM's runtime and numpy only.

Imports neither torch nor onnx nor the compiler (tests prove it), so an edge app ships just
this package, numpy, safetensors and TVM's runtime.
"""
from __future__ import annotations

import os

# TVM's thread pool defaults to half the hardware threads (one on a 2-vCPU machine); use all
# of them unless the user chose. Must happen before TVM starts its pool.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

from .loader import load, load_bytes  # noqa: E402
from .model import CompiledModel, TensorSpec  # noqa: E402

__all__ = ["load", "load_bytes", "CompiledModel", "TensorSpec"]
