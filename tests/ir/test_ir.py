"""Graph IR: building, the verifier, the text form, networkx view, the op registry contract."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from llmc import dims as D
from llmc.errors import ShapeError, UnsupportedOpError, VerificationError
from llmc.interpreter import run_reference
from llmc.ir import Graph, Node, TensorType, format_graph
from llmc.ops import all_ops, get_op, register_op

DOC = Path(__file__).resolve().parents[2] / "docs" / "ops.md"


def small_graph() -> Graph:
    """x[batch, 4] -> softmax(gelu(x @ w + b))."""
    g = Graph("small")
    x = g.add_input("x", "float32", [D.sym("batch"), 4])
    w = g.add_constant(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    b = g.add_constant(np.array([0.5], np.float32), "b")
    (h,) = g.add_node("matmul", [x, w], name="mm")
    (h,) = g.add_node("add", [h, b], name="bias")
    (h,) = g.add_node("gelu", [h], {"approximate": "tanh"}, name="act")
    g.add_node("softmax", [h], {"axis": 1}, name="sm", outputs=["y"])
    g.set_outputs(["y"])
    return g


# words in docs/ops.md's code spans that are attribute names or notation, not ops
_NOT_OPS = {"x", "b", "and", "with", "int", "0", "approximate", "detect_positive",
            "detect_negative", "pads", "shape", "starts", "value", "dim", "start", "end"}


def test_documented_ops_are_all_registered():
    words = {w for span in re.findall(r"`([^`]+)`", DOC.read_text()) for w in span.split()
             if re.fullmatch(r"[a-z_0-9]+", w)}
    documented = words - _NOT_OPS
    assert len(documented) > 100 and {"matmul", "attention", "dims_tensor"} <= documented
    missing = sorted(documented - set(all_ops()))
    assert not missing, f"documented but unregistered ops: {missing}"


def test_registry_errors():
    with pytest.raises(UnsupportedOpError, match="llmc IR has no op 'nope'"):
        get_op("nope")
    with pytest.raises(ValueError, match="registered twice"):
        register_op("relu", lambda t, a: t, lambda i, a: i)


def test_build_verify_and_run():
    g = small_graph()
    g.verify()
    assert str(g.types["y"]) == "float32[batch, 3]"
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    y = run_reference(g, {"x": x})["y"]
    assert y.shape == (5, 3) and y.dtype == np.float32
    h = x @ g.constants["w"] + 0.5
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    e = np.exp(h - h.max(1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(1, keepdims=True), rtol=1e-5)


def test_format_graph():
    text = format_graph(small_graph())
    assert text.startswith("graph small(\n    %x: float32[batch, 4],")
    assert "const %b: float32[1] = [0.5]" in text
    assert "const %w: float32[4, 3] = <48 bytes>" in text
    assert "%act_out: float32[batch, 3] = gelu(%bias_out) {approximate=tanh}  # act" in text
    assert "%y: float32[batch, 3] = softmax(%act_out) {axis=1}  # sm" in text
    assert text.rstrip().endswith("return %y\n}")
    assert str(small_graph()) == text


def test_format_graph_optional_input():
    g = Graph("opt")
    x = g.add_input("x", "float32", [2, 4])
    s = g.add_constant(np.ones(4, np.float32), "s")
    g.add_node("layer_norm", [x, s, ""], {"axis": 1, "epsilon": 1e-5}, outputs=["y"])
    g.set_outputs(["y"])
    g.verify()
    assert "layer_norm(%x, %s, _)" in format_graph(g)


def test_to_networkx():
    import networkx as nx
    nxg = small_graph().to_networkx()
    assert list(nx.topological_sort(nxg)) == ["mm", "bias", "act", "sm"]
    assert nxg.nodes["act"]["op"] == "gelu"
    assert nxg.edges["mm", "bias"]["value"] == "mm_out"


def test_producers_consumers_copy():
    g = small_graph()
    assert g.producers()["y"].name == "sm"
    assert [n.name for n in g.consumers()["x"]] == ["mm"]
    c = g.copy()
    c.nodes[0].attrs["extra"] = 1
    assert "extra" not in g.nodes[0].attrs
    c.verify()


# --------------------------------------------------------------------------- broken graphs
def _break_order(g):
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]


def _break_type(g):
    g.types["y"] = TensorType("float32", (D.sym("batch"), 4))


def _break_dtype(g):
    g.types["mm_out"] = TensorType("float16", g.types["mm_out"].shape)


def _break_name(g):
    g.nodes[1].name = "mm"


def _break_output(g):
    g.outputs.append("ghost")


def _break_constant(g):
    g.constants["w"] = np.zeros((4, 2), np.float32)


def _break_attr(g):
    g.nodes[3].attrs["axis"] = 5


def _break_redefine(g):
    g.nodes.append(Node("relu", ["x"], ["y"], {}, "again"))


def _break_undefined(g):
    g.nodes.append(Node("relu", ["nowhere"], ["z"], {}, "dangling"))
    g.types["z"] = g.types["y"]


@pytest.mark.parametrize("breaker,msg", [
    (_break_order, "reads 'mm_out' before it is defined"),
    (_break_type, r"output 'y' typed float32\[batch, 4\], inference says float32\[batch, 3\]"),
    (_break_dtype, "typed float16"),
    (_break_name, "node name 'mm' used twice"),
    (_break_output, "graph output 'ghost' is never defined"),
    (_break_constant, "constant 'w' type"),
    (_break_attr, r"node 'sm' \(softmax\): axis 5 out of range"),
    (_break_redefine, "value 'y' defined twice"),
    (_break_undefined, "reads 'nowhere'"),
])
def test_verify_catches_broken_graphs(breaker, msg):
    g = small_graph()
    breaker(g)
    with pytest.raises(VerificationError, match=msg):
        g.verify()


def test_add_node_errors_name_the_node():
    g = Graph("t")
    a = g.add_input("a", "float32", [2, 3])
    b = g.add_input("b", "float32", [4, 5])
    with pytest.raises(ShapeError, match=r"node 'proj' \(matmul\): inner dims differ"):
        g.add_node("matmul", [a, b], name="proj")
    with pytest.raises(VerificationError, match="uses undefined value 'c'"):
        g.add_node("add", [a, "c"])
    with pytest.raises(VerificationError, match="makes 1 outputs, 2 expected"):
        g.add_node("relu", [a], num_outputs=2)
    with pytest.raises(UnsupportedOpError):
        g.add_node("frobnicate", [a])


def test_split_outputs():
    g = Graph("t")
    x = g.add_input("x", "float32", [D.sym("batch"), 10])
    outs = g.add_node("split", [x], {"axis": 1, "sizes": [3, 7]}, num_outputs=2)
    assert [str(g.types[o]) for o in outs] == ["float32[batch, 3]", "float32[batch, 7]"]
    g.set_outputs(outs)
    g.verify()
    res = run_reference(g, {"x": np.arange(20, dtype=np.float32).reshape(2, 10)})
    np.testing.assert_array_equal(res[outs[1]], np.arange(20).reshape(2, 10)[:, 3:])


def test_every_op_infers_and_runs_on_a_small_case():
    """Each registered op runs through add_node, verify and the reference on a tiny input."""
    from llmc.ops import all_ops
    f = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
    i = np.array([[1, -2, 0], [2, 1, 0]], np.int64)
    bl = f > 0
    special = {
        "logical_not": [bl], "bitwise_not": [i], "isnan": [f], "isinf": [f],
        "logical_and": [bl, bl], "logical_or": [bl, bl], "logical_xor": [bl, bl],
        "bitwise_and": [i, i], "bitwise_or": [i, i], "bitwise_xor": [i, i],
        "bit_shift": [np.abs(i), np.abs(i)], "mod": [i, np.abs(i) + 1], "where": [bl, f, f],
        "prelu": [f, f[0]], "matmul": [f, f.T], "gather": [f, i], "gather_elements": [f, i],
        "gather_nd": [f, np.array([[0, 1]], np.int64)],
        "scatter_elements": [f, np.array([[0, 1, 1]], np.int64), f[:1]],
        "scatter_nd": [f, np.array([[1]], np.int64), f[:1]],
        "concat": [f, f], "one_hot": [i], "range": [], "full": [], "dims_tensor": [],
        "attention": [f, f, f],
        "conv": [f[None], np.ones((2, 2, 2), np.float32)],
        "conv_transpose": [f[None], np.ones((2, 2, 2), np.float32)],
        "batch_norm": [f[None]] + [np.ones(2, np.float32)] * 4,
        "instance_norm": [f[None]] + [np.ones(2, np.float32)] * 2,
        "layer_norm": [f, np.ones(3, np.float32)], "rms_norm": [f, np.ones(3, np.float32)],
        "max_pool": [f[None]], "avg_pool": [f[None]], "global_avg_pool": [f[None]],
        "global_max_pool": [f[None]], "lrn": [f[None]], "acosh": [np.abs(f) + 1],
        "depth_to_space": [np.ones((1, 4, 2, 2), np.float32)],
        "space_to_depth": [np.ones((1, 1, 2, 2), np.float32)],
        "rope": [f[:, :2], f[:1, :2], f[1:, :2]],  # E = 2; cos/sin broadcast
        "kv_cache_write": [f[None, None]] * 2 + [f[None, None, :1]] * 2,  # cache 2 rows, E = 3
    }
    binary = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "equal", "less",
              "less_equal", "greater", "greater_equal"}
    attrs = {
        "cast": {"to": "int32"}, "clip": {"min": 0.0, "max": 1.0}, "reshape": {"shape": [3, 2]},
        "expand": {"shape": [2, 2, 3]}, "concat": {"axis": 0}, "split": {"axis": 1,
                                                                        "sizes": [1, 2]},
        "slice": {"axes": [1], "starts": [2], "ends": [-1], "steps": [-1]},
        "squeeze": {"axes": []}, "unsqueeze": {"axes": [0]}, "gather": {"axis": 1},
        "gather_elements": {"axis": 1}, "pad": {"pads": [1, 0, 0, 1], "mode": "reflect"},
        "tile": {"repeats": [1, 2]}, "bit_shift": {"direction": "left"},
        "depth_to_space": {"blocksize": 2}, "space_to_depth": {"blocksize": 2},
        "one_hot": {"depth": 3, "axis": 1}, "range": {"start": 0, "limit": 5, "delta": 2},
        "full": {"shape": [2], "value": 1.0}, "dims_tensor": {"values": [3, 4]},
        "max_pool": {"kernel": [2]}, "avg_pool": {"kernel": [2]}, "lrn": {"size": 3},
        "layer_norm": {"axis": 1}, "rms_norm": {"axis": 1}, "mod": {"fmod": 0},
        "argmax": {"axis": 1}, "argmin": {"axis": 1}, "cumsum": {"axis": 1},
        "kv_cache_write": {"offset": 1},
    }
    # Ops whose inputs are packed weights or subgraphs have their own tests:
    # fused -> tests/passes/test_fuse.py, qlinear_* -> tests/precision, systolic_* -> tests/systolic.
    own_tests = {"fused", "qlinear_int8", "qlinear_int4", "systolic_qconv2d", "systolic_linear_bf16",
                 "qlinear_int8_wo", "qlinear_int8_wo_grouped",  # -> tests/llm/test_int8_weight_only.py
                 "qconv2d_int8",  # -> tests/precision/test_quant_conv.py
                 "layout_transform", "conv2d_nchwc", "pool2d_nchwc"}  # -> tests/passes/test_layout.py
    for op in sorted(set(all_ops()) - own_tests):
        inputs = special.get(op, [f, f] if op in binary else [f])
        g = Graph(op)
        names = [g.add_input(f"in{k}", str(a.dtype), a.shape) for k, a in enumerate(inputs)]
        outs = g.add_node(op, names, attrs.get(op, {}))
        g.set_outputs(outs)
        g.verify()
        res = run_reference(g, dict(zip(names, inputs)))
        for o in outs:
            assert res[o].shape == tuple(g.types[o].shape), op
            assert str(res[o].dtype) == g.types[o].dtype, op
