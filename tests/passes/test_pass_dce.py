"""dce: unreachable nodes and unread constants go, everything reachable stays."""
from __future__ import annotations

from llmc.ir import Graph

from passes_testutil import check, const, ops


def test_dead_branch_and_constants_removed():
    g = Graph("t")
    x = g.add_input("x", "float32", [2, 3])
    unused = const(g, [1.0, 2.0, 3.0], name="unused")
    (a,) = g.add_node("relu", [x])
    (dead,) = g.add_node("exp", [a])
    g.add_node("add", [dead, const(g, 1.0)])
    (y,) = g.add_node("tanh", [a], outputs=["y"])
    g.set_outputs([y])
    out = check(g, passes=["dce"])
    assert ops(out) == {"relu": 1, "tanh": 1}
    assert unused not in out.constants and not out.constants


def test_partly_used_multi_output_node_kept():
    g = Graph("t")
    x = g.add_input("x", "float32", [4, 6])
    p, q = g.add_node("split", [x], {"axis": 1, "sizes": [2, 4]})
    (y,) = g.add_node("relu", [q], outputs=["y"])
    g.set_outputs([y])
    out = check(g, passes=["dce"])
    assert ops(out) == {"split": 1, "relu": 1}
    assert p in out.types  # the unused result of a live node keeps its type
