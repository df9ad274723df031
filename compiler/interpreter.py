"""Run a graph with the ops' numpy references: the oracle for passes and backends."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import dims as D
from .dtypes import to_numpy
from .errors import InputError, ShapeError
from .ir import Graph
from .ops import get_op


def bind_symbols(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Check inputs against the graph's input types and return symbol -> value."""
    bindings: dict[str, int] = {}
    for name in graph.inputs:
        if name not in inputs:
            raise InputError(f"missing input {name!r}; the model takes {graph.inputs}")
        arr = inputs[name]
        ty = graph.types[name]
        if arr.dtype != to_numpy(ty.dtype):
            raise InputError(f"input {name!r} has dtype {arr.dtype}, the model expects {ty.dtype}")
        if arr.ndim != ty.rank:
            raise InputError(f"input {name!r} has shape {list(arr.shape)}, the model expects "
                             f"{D.shape_str(ty.shape)}")
        for axis, (want, got) in enumerate(zip(ty.shape, arr.shape)):
            if isinstance(want, int):
                if want != got:
                    raise InputError(f"input {name!r} has shape {list(arr.shape)}, the model "
                                     f"expects {D.shape_str(ty.shape)} (axis {axis})")
            elif want.is_Symbol:
                prev = bindings.setdefault(str(want), int(got))
                if prev != got:
                    raise InputError(f"input {name!r} axis {axis} is {got} but dim {want} is "
                                     f"{prev} elsewhere")
    return bindings


def concrete_attrs(attrs: Mapping, bindings: Mapping[str, int]) -> dict:
    """Attributes with every symbolic dim replaced by its bound value."""
    def conv(v):
        if isinstance(v, (list, tuple)):
            return type(v)(conv(x) for x in v)
        if hasattr(v, "free_symbols") and not isinstance(v, (int, float)):
            return D.evaluate(v, bindings)
        return v
    return {k: conv(v) for k, v in attrs.items()}


def run_reference(graph: Graph, inputs: Mapping[str, np.ndarray],
                  taps: dict[str, np.ndarray | None] | None = None) -> dict[str, np.ndarray]:
    """Execute ``graph`` node by node in numpy; returns output name -> array.

    ``taps`` (value name -> None) is filled in place with those intermediate values, which
    is how calibration observes activations without a second interpreter.
    """
    bindings = bind_symbols(graph, inputs)
    env: dict[str, np.ndarray] = dict(graph.constants)
    env.update({k: np.asarray(v) for k, v in inputs.items() if k in graph.inputs})
    for node in graph.nodes:
        args = [env[i] if i else None for i in node.inputs]
        try:
            outs = get_op(node.op).reference(args, concrete_attrs(node.attrs, bindings))
        except ShapeError as exc:
            raise ShapeError(f"node {node.name!r} ({node.op}): {exc}") from None
        for name, val in zip(node.outputs, outs):
            env[name] = val
    if taps is not None:
        for name in taps:
            taps[name] = env.get(name)
    return {o: env[o] for o in graph.outputs}
