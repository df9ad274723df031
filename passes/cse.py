"""Common subexpression elimination: one node per (op, inputs, attributes), one copy per
constant content.

Exporters repeat work (the same ``range`` per attention layer, the same reshape of a mask,
identical scalar literals under different names); computing it once shrinks the graph and
lets later passes see that two values are the same.
"""
from __future__ import annotations

import hashlib
from typing import Any

from llmc.ir import Graph, Node

from .manager import register_pass
from .rewrite import forward_value, remove_nodes

#: Constants up to this size are deduplicated by content (hashing is cheap, but pointless
#: for big weights that exporters already share by name).
MAX_DEDUP_BYTES = 16 * 1024 * 1024


def _attr_key(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_attr_key(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_attr_key(v) for v in value) + "]"
    return f"{type(value).__name__}:{value!r}"


def dedup_constants(graph: Graph) -> int:
    """Make every read of a constant go to the first constant with the same dtype, shape
    and bytes; returns how many duplicates were dropped."""
    seen: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    for name, arr in graph.constants.items():
        if arr.nbytes > MAX_DEDUP_BYTES:
            continue
        key = (str(arr.dtype), tuple(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest())
        if key in seen:
            alias[name] = seen[key]
        else:
            seen[key] = name
    if not alias:
        return 0
    for n in graph.nodes:
        n.inputs = [alias.get(i, i) for i in n.inputs]
    dropped = 0
    for dup in alias:
        if dup not in graph.outputs:  # an output keeps its own (equal) constant
            del graph.constants[dup]
            graph.types.pop(dup, None)
            dropped += 1
    return dropped


@register_pass("cse")
def cse(graph: Graph) -> Graph:
    """Deduplicate constants, then merge nodes with the same op, inputs and attributes.

    Merged results go into an alias map resolved as the sweep reaches each reader (linear
    time); a duplicate that is a graph output keeps its name (see ``forward_value``).
    """
    dedup_constants(graph)
    seen: dict[tuple, Node] = {}
    alias: dict[str, str] = {}
    dead: list[Node] = []

    def resolve(v: str) -> str:
        while v in alias:
            v = alias[v]
        return v

    for node in list(graph.nodes):
        if alias:
            node.inputs = [resolve(i) if i else i for i in node.inputs]
        key = (node.op, tuple(node.inputs), _attr_key(node.attrs), len(node.outputs))
        keeper = seen.get(key)
        if keeper is None:
            seen[key] = node
            continue
        if any(o in graph.outputs for o in node.outputs):
            if len(node.outputs) != 1:
                continue
            for n in graph.nodes:  # settle pending aliases before renaming anything
                n.inputs = [resolve(i) if i else i for i in n.inputs]
            alias.clear()
            if forward_value(graph, node, node.outputs[0], keeper.outputs[0]):
                remove_nodes(graph, [node])
            continue  # otherwise it became identity(keeper) to keep the output name
        for old, new in zip(node.outputs, keeper.outputs):
            alias[old] = new
        dead.append(node)
    for n in graph.nodes:
        n.inputs = [resolve(i) if i else i for i in n.inputs]
    remove_nodes(graph, dead)
    return graph
