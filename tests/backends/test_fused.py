"""Fused groups on x86: each group kind as one kernel, checked against the numpy reference.

Graphs go through the fuse pass, then x86.build; every fused node must be scheduled with its
kind's schedule (not a fallback) and the results must match run_reference of the unfused
graph. Symbolic dims: one build, run at two sizes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmc import dims as D
from llmc.backends import x86
from llmc.frontends.onnx import import_onnx
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.passes import run_passes

RNG = np.random.default_rng(0)
TINY_BERT = Path(__file__).resolve().parents[2] / "examples" / "models" / "tiny_bert.onnx"


def w(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def build_fused(g: Graph, level: str | None = None):
    """The graph after fusion (or a level) and its x86 build; fused kernels use their schedule."""
    out, _ = run_passes(g, level=level, passes=None if level else ["fuse"], verify=True)
    r = x86.build(out)
    fused = {n.name for n in out.nodes if n.op == "fused"}
    assert fused, "nothing was fused"
    for name, how in r.schedules.items():
        assert how != "none", r.schedules
        if name in fused:
            kind = next(n.attrs["kind"] for n in out.nodes if n.name == name)
            want = {"elementwise": "generic"}.get(kind, f"fused_{kind}")
            assert how == want, (name, how)
    return out, r


def compare(g: Graph, fused: Graph, r, inputs: dict, rtol=1e-4, atol=1e-5) -> None:
    want = run_reference(g, inputs)
    got = x86.run(r, inputs, fused.constants)
    for name in g.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)


def test_matmul_epilogue_symbolic_rows():
    g = Graph("mlp")
    b = D.sym("batch")
    x = g.add_input("x", "float32", [b, 5, 48])
    r = g.add_input("r", "float32", [b, 5, 40])
    (m,) = g.add_node("matmul", [x, g.add_constant(w(48, 40), "w")])
    (y,) = g.add_node("add", [m, g.add_constant(w(40), "bias")])
    (y,) = g.add_node("gelu", [y], {"approximate": "none"})
    (y,) = g.add_node("add", [y, r])
    (y,) = g.add_node("mul", [y, g.add_constant(np.float32(0.5), "half")])
    g.set_outputs([y])
    out, res = build_fused(g)
    assert res.launches == 1
    for batch in (1, 3):  # 5 and 15 rows: the tail path and a full tile + tail
        compare(g, out, res, {"x": w(batch, 5, 48), "r": w(batch, 5, 40)})


def _attn_graph(mask_kind: str) -> Graph:
    g = Graph("attn")
    b, s = D.sym("batch"), D.sym("seq")
    q = g.add_input("q", "float32", [b, 3, s, 16])
    k = g.add_input("k", "float32", [b, 3, s, 16])
    v = g.add_input("v", "float32", [b, 3, s, 16])
    (kt,) = g.add_node("transpose", [k], {"perm": [0, 1, 3, 2]})
    (sc,) = g.add_node("matmul", [q, kt])
    (sc,) = g.add_node("mul", [sc, g.add_constant(np.float32(0.25), "scale")])
    if mask_kind == "add":
        m = g.add_input("mask", "float32", [b, 1, 1, s])
        (sc,) = g.add_node("add", [sc, m])
    else:  # GPT-2's masked_fill: where(mask, scores, -inf)
        m = g.add_input("mask", "bool", [1, 1, s, s])
        (sc,) = g.add_node("where", [m, sc, g.add_constant(np.float32(-np.inf), "ninf")])
    (p,) = g.add_node("softmax", [sc], {"axis": 3})
    (o,) = g.add_node("matmul", [p, v])
    g.set_outputs([o])
    return g


@pytest.mark.parametrize("mask_kind", ["add", "where"])
def test_attention_one_kernel(mask_kind):
    g = _attn_graph(mask_kind)
    out, res = build_fused(g)
    assert [n.attrs["kind"] for n in out.nodes if n.op == "fused"] == ["attention"]
    assert res.launches == 1  # k^T is built inside the kernel, no transpose kernel
    # 70 rows: one full block of query rows (64) and a partial one
    for batch, seq in ((1, 7), (2, 33), (1, 70)):
        inputs = {n: w(batch, 3, seq, 16) for n in ("q", "k", "v")}
        if mask_kind == "add":
            m = np.zeros((batch, 1, 1, seq), np.float32)
            m[0, ..., seq // 2:] = -1e4
        else:
            m = np.tril(np.ones((seq, seq), bool))[None, None]
        inputs["mask"] = m
        compare(g, out, res, inputs)


def test_row_reductions_one_kernel_each():
    g = Graph("norms")
    n = D.sym("n")
    x = g.add_input("x", "float32", [n, 64])
    r = g.add_input("r", "float32", [n, 64])
    (s,) = g.add_node("add", [x, r])
    (y,) = g.add_node("layer_norm", [s, g.add_constant(w(64), "g"), g.add_constant(w(64), "b")],
                      {"axis": 1, "epsilon": 1e-5})
    (z,) = g.add_node("rms_norm", [y, g.add_constant(w(64), "g2")], {"axis": 1,
                                                                      "epsilon": 1e-6})
    (p,) = g.add_node("softmax", [z], {"axis": 1})
    (q,) = g.add_node("exp", [p])
    g.set_outputs([q])
    out, res = build_fused(g)
    assert [n.attrs["kind"] for n in out.nodes] == ["reduction"] * 3
    assert res.launches == 3
    for rows in (1, 10):
        compare(g, out, res, {"x": w(rows, 64), "r": w(rows, 64)})


def test_elementwise_chain():
    g = Graph("ew")
    x = g.add_input("x", "float32", [D.sym("n"), 48])
    (a,) = g.add_node("sigmoid", [x])
    (b,) = g.add_node("mul", [a, x])
    (c,) = g.add_node("tanh", [b])
    g.set_outputs([c])
    out, res = build_fused(g)
    assert res.launches == 1
    for rows in (2, 5):
        compare(g, out, res, {"x": w(rows, 48)})


def _bert_inputs(batch, seq, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0
    return {"input_ids": rng.integers(0, 1000, (batch, seq)).astype(np.int64),
            "attention_mask": mask}


def test_tiny_bert_o3_vs_o0_and_onnxruntime():
    import onnxruntime as ort

    g = import_onnx(str(TINY_BERT))
    out, res = build_fused(g, level="O3")
    base = x86.build(g)  # O0: one kernel per node
    assert res.launches < base.launches
    kinds = {n.attrs["kind"] for n in out.nodes if n.op == "fused"}
    assert {"attention", "matmul_epilogue", "reduction"} <= kinds
    sess = ort.InferenceSession(str(TINY_BERT), providers=["CPUExecutionProvider"])
    for batch, seq in ((2, 16), (1, 9)):
        inputs = _bert_inputs(batch, seq)
        (want,) = sess.run(None, inputs)
        got = x86.run(res, inputs, out.constants)[g.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        got0 = x86.run(base, inputs, g.constants)[g.outputs[0]]
        np.testing.assert_allclose(got, got0, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_gpt2_block_o3(tmp_path, gpt2_model):
    import models

    x = models.gpt2_input(batch=2, seq=8)
    path = models.export_onnx(gpt2_model, (x,), tmp_path / "gpt2.onnx", ["x"], ["y"],
                              dynamic_axes={"x": {0: "batch", 1: "seq"}})
    g = import_onnx(path)
    out, res = build_fused(g, level="O3")
    assert "attention" in {n.attrs["kind"] for n in out.nodes if n.op == "fused"}
    for batch, seq in ((2, 8), (1, 13)):
        xb = models.gpt2_input(batch=batch, seq=seq, seed=seq)
        with torch.no_grad():
            want = gpt2_model(xb).numpy()
        got = x86.run(res, {"x": xb.numpy()}, out.constants)["y"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_resnet_cnn_o3(tmp_path, resnet_model):
    import models

    x = models.resnet_input(batch=2)
    path = models.export_onnx(resnet_model, (x,), tmp_path / "resnet.onnx", ["x"], ["logits"],
                              dynamic_axes={"x": {0: "batch"}})
    g = import_onnx(path)
    out, _ = run_passes(g, level="O3", verify=True)
    res = x86.build(out)
    assert "none" not in res.schedules.values()
    for batch in (2, 3):
        xb = models.resnet_input(batch=batch, seed=batch)
        with torch.no_grad():
            want = resnet_model(xb).numpy()
        got = x86.run(res, {g.inputs[0]: xb.numpy()}, out.constants)[g.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_minilm_o3_fused(minilm_onnx_path, minilm_model, minilm_inputs):
    g = import_onnx(minilm_onnx_path)
    out, res = build_fused(g, level="O3")
    n_layers = 6
    kinds = [n.attrs["kind"] for n in out.nodes if n.op == "fused"]
    assert kinds.count("attention") == n_layers
    ids, mask = minilm_inputs
    for rows in (slice(0, 3), slice(1, 2)):
        i, m = ids[rows], mask[rows]
        keep = int(m.sum(1).max())
        i, m = i[:, :keep], m[:, :keep]
        with torch.no_grad():
            want = minilm_model(i, m)
        want = (want[0] if isinstance(want, (tuple, list)) else
                getattr(want, "last_hidden_state", want)).numpy()
        got = x86.run(res, {"input_ids": i.numpy(), "attention_mask": m.numpy()},
                      out.constants)
        np.testing.assert_allclose(got[g.outputs[0]], want, rtol=1e-3, atol=2e-4)
