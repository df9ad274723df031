"""llmc: an ahead-of-time compiler for neural-network models.

This top-level module stays light: ``import llmc.runtime`` must not pull in the compiler,
torch or onnx, so the heavy parts are imported on first use.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["compile", "load", "Artifact", "__version__"]


def __getattr__(name: str):
    if name in ("compile", "Artifact"):
        from . import api
        return getattr(api, name)
    if name == "load":
        from .runtime import load
        return load
    raise AttributeError(f"module 'llmc' has no attribute {name!r}")
