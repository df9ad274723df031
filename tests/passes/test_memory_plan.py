"""plan_memory: sizes at bound symbols, liveness, no two live buffers overlap, reuse."""
from __future__ import annotations

from pathlib import Path

from llmc.ir import Graph
from llmc.passes import plan_memory
from llmc.passes.memory_plan import ALIGN, liveness

from passes_testutil import const

TINY_BERT = Path(__file__).resolve().parents[2] / "examples" / "models" / "tiny_bert.onnx"


def assert_no_overlap(graph: Graph, plan) -> None:
    """Buffers live at the same time never share bytes; all fit in the arena."""
    names = list(plan.offsets)
    for v in names:
        assert plan.offsets[v] % ALIGN == 0
        assert plan.offsets[v] + plan.sizes[v] <= plan.arena_bytes
    for i, a in enumerate(names):
        fa, la = plan.intervals[a]
        for b in names[i + 1:]:
            fb, lb = plan.intervals[b]
            if fa <= lb and fb <= la:
                sa, sb = plan.offsets[a], plan.offsets[b]
                assert sa + plan.sizes[a] <= sb or sb + plan.sizes[b] <= sa, (a, b)


def _chain(n: int) -> Graph:
    g = Graph("t")
    v = g.add_input("x", "float32", ["batch", 256])
    for _ in range(n):
        (v,) = g.add_node("relu", [v])
    (y,) = g.add_node("exp", [v], outputs=["y"])
    g.set_outputs([y])
    return g


def test_chain_reuses_two_buffers():
    g = _chain(6)
    plan = plan_memory(g, {"batch": 4})
    assert set(plan.offsets) == {n.outputs[0] for n in g.nodes[:-1]}  # outputs not planned
    assert plan.sizes[g.nodes[0].outputs[0]] == 4 * 256 * 4
    assert plan.total_bytes == 6 * 4096 and plan.arena_bytes == 2 * 4096
    assert plan.reuse_ratio == 3.0
    assert_no_overlap(g, plan)
    # unbound symbols count as 1
    assert plan_memory(g).arena_bytes == 2 * 1024
    assert plan.to_dict()["arena_bytes"] == plan.arena_bytes


def test_long_lived_value_is_not_reused():
    g = Graph("t")
    x = g.add_input("x", "float32", [64])
    (keep,) = g.add_node("exp", [x])
    v = keep
    for _ in range(4):
        (v,) = g.add_node("relu", [v])
    (y,) = g.add_node("add", [v, keep], outputs=["y"])
    g.set_outputs([y])
    plan = plan_memory(g)
    assert plan.intervals[keep] == (0, 5)
    assert plan.arena_bytes == 3 * 256
    assert_no_overlap(g, plan)
    assert liveness(g)[keep] == (0, 5)
    const(g, 1.0)  # constants are not intermediates
    assert keep in plan_memory(g).offsets and len(plan_memory(g).offsets) == 5


def test_tiny_bert_plan_is_valid_and_saves_memory():
    from llmc.frontends.onnx import import_onnx

    g = import_onnx(str(TINY_BERT))
    plan = plan_memory(g, {"batch": 1, "seq": 128})
    assert_no_overlap(g, plan)
    assert plan.arena_bytes < plan.total_bytes / 2
    # the largest intermediate (attention scores [1, 4, 128, 128] float32) fits
    assert max(plan.sizes.values()) == 4 * 128 * 128 * 4
    assert plan.arena_bytes >= 2 * max(plan.sizes.values())
