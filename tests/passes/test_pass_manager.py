"""The pass manager: registry, levels, explicit lists, disable, report, checks."""
from __future__ import annotations

import numpy as np
import pytest

from llmc.errors import LlmcError, VerificationError
from llmc.ir import Graph
from llmc.passes import (LEVELS, NumericMismatchError, UnknownPassError, known_passes,
                         level_passes, register_pass, run_passes)

from passes_testutil import check, const, ops


def _gelu_graph() -> Graph:
    g = Graph("t")
    x = g.add_input("x", "float32", ["batch", 8])
    (d,) = g.add_node("div", [x, const(g, 1.4142135)])
    (e,) = g.add_node("erf", [d])
    (a,) = g.add_node("add", [e, const(g, 1.0)])
    (m,) = g.add_node("mul", [x, a])
    (y,) = g.add_node("mul", [m, const(g, 0.5)], outputs=["y"])
    g.set_outputs([y])
    return g


def test_levels_are_named_lists_of_known_passes():
    assert LEVELS["O0"] == []
    for level, names in LEVELS.items():
        assert set(names) <= set(known_passes()), level
    assert set(LEVELS["O3"]) >= set(LEVELS["O2"]) >= set(LEVELS["O1"])
    assert level_passes("-O2") == level_passes("2") == LEVELS["O2"]


def test_unknown_pass_lists_known_names():
    g = _gelu_graph()
    with pytest.raises(UnknownPassError) as info:
        run_passes(g, passes=["simplify", "no_such_pass"])
    assert isinstance(info.value, LlmcError)
    assert "no_such_pass" in str(info.value) and "constant_fold" in str(info.value)
    with pytest.raises(UnknownPassError):
        run_passes(g, disable=["nope"])
    with pytest.raises(UnknownPassError):
        run_passes(g, level="O7")


def test_o0_is_identity_and_input_graph_is_left_alone():
    g = _gelu_graph()
    n = len(g.nodes)
    out, report = run_passes(g, level="O0", verify=True)
    assert report.rows == [] and len(out.nodes) == n
    out3, _ = run_passes(g, level="O3", verify=True, check_numerics=True)
    assert len(g.nodes) == n  # the caller's graph is not mutated
    assert ops(out3) == {"gelu": 1}


def test_explicit_list_and_disable():
    g = _gelu_graph()
    out = check(g, level="O3")
    assert ops(out) == {"gelu": 1}
    out, report = run_passes(g, level="O3", disable=["simplify"], verify=True)
    assert "gelu" not in ops(out)
    assert all(r.name != "simplify" for r in report.rows)
    out, report = run_passes(g, passes=["simplify", "dce"], verify=True)
    assert [r.name for r in report.rows] == ["simplify", "dce"]
    assert ops(out) == {"gelu": 1}


def test_report_rows_and_table():
    g = _gelu_graph()
    _, report = run_passes(g, level="O2", verify=True, bindings={"batch": 4})
    assert [r.name for r in report.rows] == LEVELS["O2"]
    first, last = report.rows[0], report.rows[-1]
    assert first.nodes_before == len(g.nodes) and last.nodes_after == 1
    assert all(r.seconds >= 0 and r.arena_bytes is not None for r in report.rows)
    # after O2 one gelu remains, whose only buffer is the graph output: empty arena
    assert last.arena_bytes == 0 and first.arena_bytes > 0
    table = report.format_table()
    for name in LEVELS["O2"]:
        assert name in table
    assert "nodes" in table and "const bytes" in table and "+1 gelu" in table
    assert report.to_dicts()[0]["name"] == LEVELS["O2"][0]


def test_verifier_and_numeric_check_catch_bad_passes():
    @register_pass("test_break_types")
    def break_types(graph: Graph) -> Graph:
        graph.types[graph.nodes[0].outputs[0]] = graph.types[graph.inputs[0]].__class__(
            "float64", (1,))
        return graph

    @register_pass("test_add_to_sub")
    def add_to_sub(graph: Graph) -> Graph:
        for n in graph.nodes:
            if n.op == "add":
                n.op = "sub"
        return graph

    g = _gelu_graph()
    with pytest.raises(VerificationError, match="test_break_types"):
        run_passes(g, passes=["test_break_types"], verify=True)
    with pytest.raises(NumericMismatchError, match="test_add_to_sub"):
        run_passes(g, passes=["test_add_to_sub"], verify=True, check_numerics=True)
    # without the numeric check the broken pass goes through: the check is what catches it
    run_passes(g, passes=["test_add_to_sub"], verify=True)


def test_check_numerics_with_given_inputs():
    g = _gelu_graph()
    inputs = {"x": np.linspace(-3, 3, 24, dtype=np.float32).reshape(3, 8)}
    out, _ = run_passes(g, level="O3", verify=True, check_numerics=inputs)
    assert out.outputs == ["y"]
