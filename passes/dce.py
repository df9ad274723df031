"""Dead code elimination: drop nodes and constants whose results nothing reads."""
from __future__ import annotations

from llmc.ir import Graph

from .manager import register_pass


@register_pass("dce")
def dce(graph: Graph) -> Graph:
    """Remove nodes none of whose outputs reach a graph output, then unused constants.

    Why: folding and simplification leave producers behind; backends should not compile them
    and the artifact should not carry weights nobody reads. No op in llmc's set has side
    effects, so liveness is plain reachability from the outputs.
    """
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(i for i in node.inputs if i)
        else:
            for o in node.outputs:
                graph.types.pop(o, None)
    graph.nodes = kept[::-1]
    for c in [c for c in graph.constants if c not in live]:
        del graph.constants[c]
        graph.types.pop(c, None)
    return graph
