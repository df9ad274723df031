"""cse: equal nodes and equal constants merged; different attributes kept apart."""
from __future__ import annotations

import numpy as np

from llmc import dims as D
from llmc.ir import Graph

from passes_testutil import check, const, ops


def test_identical_nodes_and_constants_merged():
    g = Graph("t")
    x = g.add_input("x", "float32", ["n", 4])
    c1 = const(g, 2.0, name="two")
    c2 = const(g, 2.0, name="two_again")
    (a,) = g.add_node("mul", [x, c1])
    (b,) = g.add_node("mul", [x, c2])  # same after constant dedup
    (r1,) = g.add_node("range", [], {"start": 0, "limit": D.sym("n"), "delta": 1, "dtype": "int64"})
    (r2,) = g.add_node("range", [], {"start": 0, "limit": D.sym("n"), "delta": 1, "dtype": "int64"})
    (s,) = g.add_node("add", [a, b])
    (r,) = g.add_node("add", [r1, r2], outputs=["r"])
    g.set_outputs([s, r])
    out = check(g, passes=["cse", "dce"])
    assert ops(out) == {"mul": 1, "add": 2, "range": 1}
    assert len(out.constants) == 1


def test_different_attrs_or_inputs_not_merged():
    g = Graph("t")
    x = g.add_input("x", "float32", [2, 3, 4])
    (a,) = g.add_node("transpose", [x], {"perm": [1, 0, 2]})
    (b,) = g.add_node("transpose", [x], {"perm": [0, 2, 1]})
    (c,) = g.add_node("reduce_sum", [x], {"axes": [1], "keepdims": True})
    (d,) = g.add_node("reduce_sum", [x], {"axes": [1], "keepdims": False})
    (e,) = g.add_node("mul", [x, const(g, 2.0)])
    (f,) = g.add_node("mul", [x, const(g, 3.0)])
    g.set_outputs([a, b, c, d, e, f])
    out = check(g, passes=["cse", "dce"])
    assert len(out.nodes) == 6 and len(out.constants) == 2


def test_duplicate_that_is_a_graph_output_keeps_its_name():
    g = Graph("t")
    x = g.add_input("x", "float32", [3])
    (a,) = g.add_node("exp", [x])
    (b,) = g.add_node("exp", [x], outputs=["out_b"])
    (s,) = g.add_node("add", [a, b], outputs=["sum"])
    g.set_outputs(["out_b", "sum"])
    out = check(g, passes=["cse", "dce"])
    assert out.outputs == ["out_b", "sum"]
    assert ops(out) == {"exp": 1, "add": 1}
    inputs = {"x": np.arange(3, dtype=np.float32)}
    check(g, passes=["cse"], inputs=inputs)
