"""llmc's backends: each lowers a Graph through TVM for one kind of target.

A backend module exposes ``build(graph, **options) -> BuildResult`` (executable, parameter
order and arrays, kernels) and ``target_manifest(result, options) -> dict`` (what the runtime
checks before it loads the artifact: device, architecture, CPU features or GPU arch).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from llmc.errors import BackendError

BACKENDS = {"x86": "llmc.backends.x86", "cuda": "llmc.backends.cuda", "arm64": "llmc.backends.arm64",
            "systolic": "llmc.backends.systolic"}


def get_backend(target: str) -> ModuleType:
    """The backend module for a target name."""
    try:
        return importlib.import_module(BACKENDS[target])
    except KeyError:
        raise BackendError(f"unknown target {target!r}; llmc supports {', '.join(BACKENDS)}") from None
