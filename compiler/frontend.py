"""Pick the frontend for whatever a user hands to ``llmc.compile``."""
from __future__ import annotations

import os
from typing import Any

from .errors import FrontendError
from .ir import Graph


def import_model(model: Any, example_inputs: Any = None, *, dynamic_shapes: Any = None,
                 input_shapes: dict | None = None) -> Graph:
    """An ONNX path/ModelProto, a torch Module/ExportedProgram or an llmc Graph -> Graph.

    torch is imported only when the model is a torch object, so ONNX users need no torch.
    """
    if isinstance(model, Graph):
        return model
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if path.endswith(".onnx") or not path.endswith((".pt", ".pt2", ".pth")):
            from .frontends.onnx import import_onnx
            return import_onnx(path, input_shapes=input_shapes)
        raise FrontendError(f"{path}: llmc compiles ONNX files, torch.nn.Module and "
                            "torch.export.ExportedProgram objects; export this model with "
                            "torch.export or torch.onnx first")
    module = type(model).__module__ or ""
    if module.startswith("onnx"):
        from .frontends.onnx import import_onnx
        return import_onnx(model, input_shapes=input_shapes)
    if module.startswith("torch") or _is_torch_module(model):
        from .frontends.torch import import_torch
        return import_torch(model, example_inputs, dynamic_shapes=dynamic_shapes)
    raise FrontendError(f"cannot compile a {type(model).__name__}: pass an ONNX file path, an "
                        "onnx.ModelProto, a torch.nn.Module (with example_inputs) or a "
                        "torch.export.ExportedProgram")


def _is_torch_module(model: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") for c in type(model).__mro__)
