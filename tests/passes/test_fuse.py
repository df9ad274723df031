"""The fuse pass: groups on hand-built patterns, near misses, and whole models through O3.

Every graph goes through run_passes with the verifier and the numpy oracle after each pass,
so a group that changed what the graph computes fails here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmc import dims as D
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.passes import LEVELS, plan_memory, run_passes
from llmc.passes.fuse import find_groups, fused_groups

from passes_testutil import check, const, ops

RNG = np.random.default_rng(0)
TINY_BERT = Path(__file__).resolve().parents[2] / "examples" / "models" / "tiny_bert.onnx"


def w(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def kinds(g: Graph) -> list[tuple[str, list[str]]]:
    return [(k, ops_) for _, k, ops_ in fused_groups(g)]


def _mlp(extra_use: bool = False) -> Graph:
    g = Graph("mlp")
    x = g.add_input("x", "float32", [D.sym("batch"), 8, 16])
    r = g.add_input("r", "float32", [D.sym("batch"), 8, 32])
    (m,) = g.add_node("matmul", [x, const(g, w(16, 32), name="w")])
    (b,) = g.add_node("add", [m, const(g, w(32), name="bias")])
    (a,) = g.add_node("gelu", [b], {"approximate": "tanh"})
    (y,) = g.add_node("add", [a, r])
    outs = [y]
    if extra_use:
        (z,) = g.add_node("relu", [b])  # the bias add is read outside the chain
        outs.append(z)
    g.set_outputs(outs)
    return g


def test_matmul_epilogue_is_one_group():
    out = check(_mlp(), passes=["fuse"])
    assert kinds(out) == [("matmul_epilogue", ["matmul", "add", "gelu", "add"])]
    assert ops(out) == {"fused": 1}


def test_epilogue_stops_at_a_value_read_twice():
    out = check(_mlp(extra_use=True), passes=["fuse"])
    # matmul + bias only (its output has two readers, so the chain ends there)
    assert ("matmul_epilogue", ["matmul", "add"]) in kinds(out)
    assert ("elementwise", ["gelu", "add"]) in kinds(out)


def test_matmul_of_two_activations_gets_no_epilogue_group():
    g = Graph("mm")
    a = g.add_input("a", "float32", [4, 8])
    b = g.add_input("b", "float32", [8, 4])
    (m,) = g.add_node("matmul", [a, b])
    (y,) = g.add_node("relu", [m])
    g.set_outputs([y])
    out = check(g, passes=["fuse"])
    assert ops(out) == {"matmul": 1, "relu": 1}


def _attention(axis: int = 3, scale_const: bool = True, out_interior: bool = False) -> Graph:
    g = Graph("attn")
    b, s = D.sym("batch"), D.sym("seq")
    q = g.add_input("q", "float32", [b, 2, s, 8])
    kt = g.add_input("kt", "float32", [b, 2, 8, s])
    v = g.add_input("v", "float32", [b, 2, s, 8])
    mask = g.add_input("mask", "float32", [b, 1, s, s])
    (sc,) = g.add_node("matmul", [q, kt])
    (sc2,) = g.add_node("mul", [sc, const(g, 0.35, name="scale")])
    (sm,) = g.add_node("add", [sc2, mask])
    (p,) = g.add_node("softmax", [sm], {"axis": axis})
    (o,) = g.add_node("matmul", [p, v])
    g.set_outputs([o, p] if out_interior else [o])
    return g


def test_attention_group():
    out = check(_attention(), passes=["fuse"])
    assert kinds(out) == [("attention", ["matmul", "mul", "add", "softmax", "matmul"])]


def test_attention_group_reads_k_through_its_transpose():
    # k [b, h, s, e] -> k^T [b, h, e, s] moves the last axis: still taken into the group
    g = Graph("attn_kt")
    b, s = D.sym("batch"), D.sym("seq")
    q = g.add_input("q", "float32", [b, 2, s, 8])
    k = g.add_input("k", "float32", [b, 2, s, 8])
    v = g.add_input("v", "float32", [b, 2, s, 8])
    (kt,) = g.add_node("transpose", [k], {"perm": [0, 1, 3, 2]})
    (sc,) = g.add_node("matmul", [q, kt])
    (p,) = g.add_node("softmax", [sc], {"axis": 3})
    (o,) = g.add_node("matmul", [p, v])
    g.set_outputs([o])
    out = check(g, passes=["fuse"])
    assert kinds(out) == [("attention", ["transpose", "matmul", "softmax", "matmul"])]


def test_attention_near_misses():
    # softmax over another axis: no attention group (row-wise kernels need the last axis)
    out = check(_attention(axis=2), passes=["fuse"])
    assert all(k != "attention" for k, _ in kinds(out))
    # the probabilities are a graph output: they must be materialized, no attention group
    out = check(_attention(out_interior=True), passes=["fuse"])
    assert all(k != "attention" for k, _ in kinds(out))
    assert "softmax" in {o for _, ops_ in kinds(out) for o in ops_} or ops(out)["softmax"] == 1


def test_layer_norm_with_producers_and_consumers():
    g = Graph("ln")
    x = g.add_input("x", "float32", [D.sym("n"), 32])
    r = g.add_input("r", "float32", [D.sym("n"), 32])
    (s,) = g.add_node("add", [x, r])
    (ln,) = g.add_node("layer_norm", [s, const(g, w(32), name="g"), const(g, w(32), name="b")],
                       {"axis": 1, "epsilon": 1e-5})
    (y,) = g.add_node("relu", [ln])
    g.set_outputs([y])
    out = check(g, passes=["fuse"], rtol=1e-4, atol=1e-5)
    assert kinds(out) == [("reduction", ["add", "layer_norm", "relu"])]


def test_norm_not_over_last_axis_is_left_alone():
    g = Graph("ln1")
    x = g.add_input("x", "float32", [2, 8, 4])
    (ln,) = g.add_node("layer_norm", [x, const(g, w(8, 4), name="g")], {"axis": 1})
    (y,) = g.add_node("relu", [ln])
    g.set_outputs([y])
    out = check(g, passes=["fuse"], rtol=1e-4, atol=1e-5)
    assert ops(out) == {"layer_norm": 1, "relu": 1}


def test_elementwise_chain_and_broadcast_growth():
    g = Graph("ew")
    x = g.add_input("x", "float32", [4, 1])
    y = g.add_input("y", "float32", [4, 6])
    (a,) = g.add_node("exp", [x])
    (b,) = g.add_node("neg", [a])
    (c,) = g.add_node("add", [b, y])  # grows the shape: not in the [4, 1] chain
    (d,) = g.add_node("relu", [c])
    (e,) = g.add_node("tanh", [d])
    g.set_outputs([e])
    out = check(g, passes=["fuse"])
    # the growing add starts a new [4, 6] chain rather than joining the [4, 1] one
    assert sorted(kinds(out)) == [("elementwise", ["add", "relu", "tanh"]),
                                  ("elementwise", ["exp", "neg"])]


def test_fused_graph_runs_at_two_symbol_values():
    g = _mlp()
    out, _ = run_passes(g, passes=["fuse"], verify=True)
    for batch in (1, 3):
        inputs = {"x": RNG.standard_normal((batch, 8, 16)).astype(np.float32),
                  "r": RNG.standard_normal((batch, 8, 32)).astype(np.float32)}
        want = run_reference(g, inputs)
        got = run_reference(out, inputs)
        np.testing.assert_allclose(got[g.outputs[0]], want[g.outputs[0]], rtol=1e-6)


def test_fuse_is_at_the_end_of_o2_and_o3():
    assert LEVELS["O2"][-1] == "fuse" and LEVELS["O3"][-1] == "fuse"
    assert "fuse" not in LEVELS["O0"] + LEVELS["O1"]


def test_tiny_bert_o3_fuses_and_keeps_numerics():
    from llmc.frontends.onnx import import_onnx

    g = import_onnx(str(TINY_BERT))
    rng = np.random.default_rng(0)
    mask = np.ones((2, 16), np.int64)
    mask[0, 8:] = 0
    inputs = {"input_ids": rng.integers(0, 1000, (2, 16)).astype(np.int64),
              "attention_mask": mask}
    unfused, _ = run_passes(g, level="O3", disable=["fuse"])
    out, report = run_passes(g, level="O3", verify=True, check_numerics=inputs,
                             rtol=1e-4, atol=1e-5)
    got = {k for k, _ in kinds(out)}
    assert {"attention", "matmul_epilogue", "reduction"} <= got
    assert len(out.nodes) < len(unfused.nodes)
    assert report.rows[-1].name == "fuse"
    # fused groups keep their intermediates inside the kernel: fewer bytes to plan
    dims = {"batch": 1, "seq": 128}
    assert plan_memory(out, dims).total_bytes < plan_memory(unfused, dims).total_bytes


def test_find_groups_each_node_at_most_once():
    from llmc.frontends.onnx import import_onnx

    g, _ = run_passes(import_onnx(str(TINY_BERT)), level="O3", disable=["fuse"])
    seen: set[str] = set()
    for _, nodes in find_groups(g):
        names = [n.name for n in nodes]
        assert not seen & set(names)
        seen |= set(names)


def test_dot_drawing(tmp_path):
    import shutil

    from llmc.errors import LlmcError
    from llmc.visualize import to_dot, write_graph

    out, _ = run_passes(_attention(), passes=["fuse"])
    text = to_dot(out)
    assert "cluster_" in text and "[attention]" in text and text.count("->") >= 7
    p = write_graph(out, tmp_path / "g.dot")
    assert Path(p).read_text() == text
    if shutil.which("dot"):
        svg = write_graph(out, tmp_path / "g.svg")
        assert "<svg" in Path(svg).read_text()
    else:
        with pytest.raises(LlmcError, match="graphviz"):
            write_graph(out, tmp_path / "g.svg")


# ----------------------------------------------------------------------------- conv epilogues
def _conv_net(op: str = "conv", extra_use: bool = False) -> Graph:
    """conv (+bias input) -> bias add -> relu -> residual add -> scale -> clip, plain or blocked."""
    g = Graph("convnet")
    if op == "conv":
        x = g.add_input("x", "float32", [D.sym("batch"), 16, 6, 6])
        r = g.add_input("r", "float32", [D.sym("batch"), 16, 6, 6])
        wt, bshape, sshape = w(16, 16, 3, 3), (1, 16, 1, 1), (16, 1, 1)
    else:  # the blocked form the layout pass makes (NCHW8c)
        x = g.add_input("x", "float32", [D.sym("batch"), 2, 6, 6, 8])
        r = g.add_input("r", "float32", [D.sym("batch"), 2, 6, 6, 8])
        wt, bshape, sshape = w(2, 2, 3, 3, 8, 8), (1, 2, 1, 1, 8), (2, 1, 1, 8)
    (c,) = g.add_node(op, [x, const(g, wt, name="w"), const(g, w(16), name="b0")],
                      {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1]})
    (b,) = g.add_node("add", [c, const(g, w(*bshape), name="bias")])
    (a,) = g.add_node("relu", [b])
    (y,) = g.add_node("add", [a, r])
    (s,) = g.add_node("mul", [y, const(g, w(*sshape), name="scale")])
    (z,) = g.add_node("clip", [s], {"min": -1.0, "max": 1.0})
    outs = [z]
    if extra_use:
        (e,) = g.add_node("sigmoid", [a])
        outs.append(e)
    g.set_outputs(outs)
    return g


@pytest.mark.parametrize("op", ["conv", "conv2d_nchwc"])
def test_conv_epilogue_is_one_group(op):
    out = check(_conv_net(op), passes=["fuse"], atol=1e-5)
    assert kinds(out) == [("conv_epilogue", [op, "add", "relu", "add", "mul", "clip"])]
    assert ops(out) == {"fused": 1}


def test_conv_epilogue_stops_at_a_value_read_twice():
    out = check(_conv_net(extra_use=True), passes=["fuse"], atol=1e-5)
    assert ("conv_epilogue", ["conv", "add", "relu"]) in kinds(out)
    assert ("elementwise", ["add", "mul", "clip"]) in kinds(out)


def test_lone_conv_is_not_a_group():
    g = Graph("lone")
    x = g.add_input("x", "float32", [1, 4, 5, 5])
    (c,) = g.add_node("conv", [x, const(g, w(4, 4, 1, 1), name="w")], {})
    (p,) = g.add_node("max_pool", [c], {"kernel": [2, 2], "strides": [2, 2]})
    g.set_outputs([p])
    out = check(g, passes=["fuse"])
    assert kinds(out) == [] and ops(out) == {"conv": 1, "max_pool": 1}
