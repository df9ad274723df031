"""constant_fold: constant subgraphs evaluated at compile time, symbolic ones left alone."""
from __future__ import annotations

import numpy as np

from llmc import dims as D
from llmc.ir import Graph
from llmc.passes import constant_fold as cf

from passes_testutil import check, const, ops


def test_weight_transpose_and_scale_folded():
    rng = np.random.default_rng(0)
    g = Graph("t")
    x = g.add_input("x", "float32", ["b", 8])
    w = const(g, rng.standard_normal((6, 8)), name="w")
    (wt,) = g.add_node("transpose", [w], {"perm": [1, 0]})
    (ws,) = g.add_node("mul", [wt, const(g, 0.25)])
    (y,) = g.add_node("matmul", [x, ws], outputs=["y"])
    g.set_outputs([y])
    out = check(g, passes=["constant_fold", "dce"])
    assert ops(out) == {"matmul": 1}
    assert list(out.constants) == [ws] and out.constants[ws].shape == (8, 6)
    np.testing.assert_allclose(out.constants[ws], g.constants[w].T * 0.25, rtol=1e-6)


def test_static_shape_subgraph_folds_and_symbolic_one_stays():
    g = Graph("t")
    x = g.add_input("x", "float32", ["b", 6])
    (dims,) = g.add_node("dims_tensor", [], {"values": [2, 3], "dtype": "int64"})
    (f,) = g.add_node("full", [], {"shape": [2, 3], "value": 1.5, "dtype": "float32"})
    (r,) = g.add_node("range", [], {"start": 0, "limit": 6, "delta": 1, "dtype": "int64"})
    (rf,) = g.add_node("cast", [r], {"to": "float32"})
    (sym_r,) = g.add_node("range", [], {"start": 0, "limit": D.sym("b"), "delta": 1,
                                        "dtype": "int64"})
    (a,) = g.add_node("add", [x, rf])
    (s,) = g.add_node("reduce_sum", [f], {"axes": [], "keepdims": False})
    (y,) = g.add_node("mul", [a, s], outputs=["y"])
    (n,) = g.add_node("cast", [dims], {"to": "float32"}, outputs=["n"])
    g.set_outputs([y, n, sym_r])
    out = check(g, passes=["constant_fold", "dce"])
    assert ops(out) == {"add": 1, "mul": 1, "range": 1}
    assert "n" in out.constants and out.outputs == g.outputs  # an output folded keeps its name
    assert out.constants[s] == np.float32(9.0)


def test_node_with_a_runtime_input_not_folded():
    g = Graph("t")
    x = g.add_input("x", "float32", [3])
    (a,) = g.add_node("exp", [x])
    (b,) = g.add_node("add", [a, const(g, 1.0)], outputs=["y"])
    g.set_outputs([b])
    assert ops(check(g, passes=["constant_fold"])) == {"exp": 1, "add": 1}


def test_huge_results_are_not_folded_unless_they_replace_more(monkeypatch):
    monkeypatch.setattr(cf, "MAX_FOLD_BYTES", 1024)
    g = Graph("t")
    x = g.add_input("x", "float32", [64, 64])
    small = const(g, np.ones((1, 64)), name="small")
    (big,) = g.add_node("expand", [small], {"shape": [64, 64]})  # 16 KiB out of 256 B: no
    w = const(g, np.arange(64 * 64).reshape(64, 64) / 4096.0, name="w")
    (wt,) = g.add_node("transpose", [w], {"perm": [1, 0]})  # 16 KiB replacing 16 KiB: yes
    (a,) = g.add_node("add", [x, big])
    (y,) = g.add_node("matmul", [a, wt], outputs=["y"])
    g.set_outputs([y])
    out = check(g, passes=["constant_fold", "dce"])
    assert ops(out) == {"expand": 1, "add": 1, "matmul": 1}
    assert w not in out.constants and wt in out.constants


def test_symbolic_shape_chain_collapses_to_one_dims_tensor():
    g = Graph("t")
    x = g.add_input("x", "float32", ["b", "s"])
    b, s = D.sym("b"), D.sym("s")
    (shp,) = g.add_node("dims_tensor", [], {"values": [b, s], "dtype": "int64"})
    (sq,) = g.add_node("gather", [shp, const(g, 1, dtype=np.int64)], {"axis": 0})  # 0-d: s
    (u,) = g.add_node("unsqueeze", [sq], {"axes": [0]})
    (m,) = g.add_node("mul", [u, const(g, [4], dtype=np.int64)])
    (c,) = g.add_node("concat", [m, const(g, [7], dtype=np.int64)], {"axis": 0})
    (f,) = g.add_node("cast", [c], {"to": "float32"})
    (y,) = g.add_node("add", [x, g.add_node("reduce_sum", [f], {"axes": [],
                                                                 "keepdims": False})[0]],
                      outputs=["y"])
    g.set_outputs([y])
    out = check(g, passes=["constant_fold", "dce"])
    assert ops(out) == {"dims_tensor": 1, "cast": 1, "reduce_sum": 1, "add": 1}
    (dt,) = [n for n in out.nodes if n.op == "dims_tensor"]
    assert [D.dim_str(v) for v in dt.attrs["values"]] == ["4*s", "7"]
    # and a chain whose dims are static folds all the way to a literal
    g2 = Graph("t2")
    x2 = g2.add_input("x", "int64", [3])
    (s2,) = g2.add_node("dims_tensor", [], {"values": [2, 3], "dtype": "int64"})
    (s3,) = g2.add_node("slice", [s2], {"axes": [0], "starts": [1], "ends": [2], "steps": [1]})
    (y2,) = g2.add_node("add", [x2, s3], outputs=["y"])
    g2.set_outputs([y2])
    assert ops(check(g2, passes=["constant_fold", "dce"])) == {"add": 1}


def test_gpt2_block_weight_transposes_and_mask_slices_fold(gpt2_model):
    import models
    import torch

    from llmc.frontends.torch import import_torch
    from llmc.interpreter import run_reference
    from llmc.passes import run_passes

    x = models.gpt2_input()
    g = import_torch(gpt2_model, (x,))

    def const_fed(graph, op):  # nodes of ``op`` reading a constant directly
        return [n for n in graph.nodes if n.op == op and n.inputs[0] in graph.constants]
    assert const_fed(g, "transpose") and const_fed(g, "slice")
    out, report = run_passes(g, level="O1", verify=True, check_numerics={"x": x.numpy()})
    assert not const_fed(out, "transpose") and not const_fed(out, "slice")
    assert out.constant_bytes() < g.constant_bytes()  # the 1024x1024 mask buffer is gone
    fold = next(r for r in report.rows if r.name == "constant_fold")
    assert fold.const_bytes_after < fold.const_bytes_before
    with torch.no_grad():
        want = gpt2_model(x).numpy()
    (got,) = run_reference(out, {"x": x.numpy()}).values()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
