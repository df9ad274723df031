"""Small graph-editing helpers shared by the passes.

The rules every pass keeps: graph inputs never change, graph outputs keep their names, nodes
stay in topological order. :func:`forward_value` is the one place that redirects the uses of a
value to another one while honouring those rules.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from llmc import dims as D
from llmc.dtypes import from_numpy
from llmc.ir import Graph, Node, TensorType


def same_type(a: TensorType, b: TensorType) -> bool:
    """Equal dtype and provably equal shape: the guard before replacing one value by another."""
    return a.dtype == b.dtype and len(a.shape) == len(b.shape) and \
        all(D.equal(x, y) for x, y in zip(a.shape, b.shape))


def rename_uses(graph: Graph, old: str, new: str) -> None:
    """Every node input (and graph output) reading ``old`` reads ``new`` instead."""
    for n in graph.nodes:
        if old in n.inputs:
            n.inputs = [new if i == old else i for i in n.inputs]
    graph.outputs = [new if o == old else o for o in graph.outputs]


def forward_value(graph: Graph, node: Node, old: str, new: str) -> bool:
    """Make ``old`` (an output of ``node``, which the caller drops) an alias of ``new``.

    Returns True when the uses were redirected and ``node`` may be removed. When ``old`` is a
    graph output its name must survive: then ``new`` is renamed to ``old`` if it is a plain
    node result; otherwise ``node`` becomes ``identity(new)`` in place and False is returned.
    """
    if old not in graph.outputs:
        rename_uses(graph, old, new)
        return True
    producer = next((n for n in graph.nodes if new in n.outputs), None)
    if producer is not None and producer is not node and new not in graph.outputs \
            and new not in graph.inputs and len(node.outputs) == 1:
        # rename ``new`` to ``old`` everywhere: its producer now makes the output.
        producer.outputs = [old if o == new else o for o in producer.outputs]
        for n in graph.nodes:
            if n is not node and new in n.inputs:
                n.inputs = [old if i == new else i for i in n.inputs]
        graph.types[old] = graph.types.pop(new)
        return True
    if node.op != "identity" or node.inputs != [new]:
        node.op, node.inputs, node.attrs = "identity", [new], {}
    return False


def remove_nodes(graph: Graph, dead: Iterable[Node]) -> None:
    """Drop nodes (by identity) and the types of their outputs that nothing defines any more."""
    dead_ids = {id(n) for n in dead}
    if not dead_ids:
        return
    kept = []
    for n in graph.nodes:
        if id(n) in dead_ids:
            for o in n.outputs:
                if o not in graph.outputs and o not in graph.constants:
                    graph.types.pop(o, None)
        else:
            kept.append(n)
    graph.nodes = kept


def add_constant_as(graph: Graph, name: str, array: np.ndarray) -> None:
    """Store ``array`` as the constant ``name`` (replacing the value's former producer)."""
    array = np.require(array, requirements="C")  # ascontiguousarray makes 0-d arrays 1-d
    graph.constants[name] = array
    graph.types[name] = TensorType(from_numpy(array.dtype), array.shape)


def new_constant(graph: Graph, array: np.ndarray, hint: str = "const") -> str:
    """A fresh constant value."""
    return graph.add_constant(np.require(array, requirements="C"), hint)


def scalar_value(graph: Graph, name: str) -> float | None:
    """The value of a constant with exactly one element, else None."""
    arr = graph.constants.get(name)
    if arr is None or arr.size != 1:
        return None
    return arr.reshape(-1)[0].item()


def constant_all(graph: Graph, name: str, value: float) -> bool:
    """True when ``name`` is a constant whose every element equals ``value``."""
    arr = graph.constants.get(name)
    if arr is None or arr.size == 0 or arr.dtype == np.bool_:
        return False
    return bool(np.all(arr == value))


def use_counts(graph: Graph) -> dict[str, int]:
    """Value name -> number of reads (node inputs plus graph outputs)."""
    counts: dict[str, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            if i:
                counts[i] = counts.get(i, 0) + 1
    for o in graph.outputs:
        counts[o] = counts.get(o, 0) + 1
    return counts
