"""--target systolic: array layers bit-exact against the int8 reference, the rest on x86."""
import numpy as np
import pytest

from llmc.backends.systolic import build, prepare_graph, runtime_hook
from llmc.backends.systolic.qconv import OP as QCONV
from llmc.backends.x86 import run
from llmc.errors import InputError
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.ops import get_op


def _mlp(seed=0):
    rng = np.random.default_rng(seed)
    g = Graph("mlp")
    x = g.add_input("x", "float32", (2, 5, 40))
    w1 = g.add_constant(rng.standard_normal((40, 30)).astype(np.float32), "w1")
    b1 = g.add_constant(rng.standard_normal(30).astype(np.float32), "b1")
    w2 = g.add_constant(rng.standard_normal((30, 7)).astype(np.float32), "w2")
    h, = g.add_node("matmul", [x, w1])
    h, = g.add_node("add", [h, b1])
    h, = g.add_node("relu", [h])
    y, = g.add_node("matmul", [h, w2])
    g.set_outputs([y])
    return g


def assert_layers_bit_exact(result, session):
    """Each array call equals the qlinear_int8 numpy reference on the same input, bit for bit,
    and its int32 accumulators equal numpy's int32 GEMM of the quantized operands."""
    ref8 = result.graph
    nodes = {n.name: n for n in ref8.nodes if n.op in ("qlinear_int8", QCONV)}
    assert session.operands, "no array call was made"
    for name, x, xq, wq, acc, y in session.operands:
        np.testing.assert_array_equal(
            acc, (xq.astype(np.int64) @ wq.astype(np.int64)).astype(np.int32))
        node = nodes[name]
        ins = [x] + [ref8.constants[i] for i in node.inputs[1:] if i]
        want = get_op(node.op).reference(ins, node.attrs)[0]
        np.testing.assert_array_equal(y, want.reshape(y.shape))


def test_mlp_bit_exact_and_profiled():
    g = _mlp()
    rng = np.random.default_rng(1)
    cal = [{"x": rng.standard_normal((2, 5, 40)).astype(np.float32)} for _ in range(3)]
    res = build(g, systolic_config="edge", calibration=cal)
    assert [layer["name"] for layer in res.array_layers] == ["matmul", "matmul_0"]
    xin = {"x": rng.standard_normal((2, 5, 40)).astype(np.float32)}
    with runtime_hook.profile(keep_operands=True) as s:
        out = run(res, xin)
    assert_layers_bit_exact(res, s)
    want = run_reference(res.graph, xin)[g.outputs[0]]
    np.testing.assert_allclose(out[g.outputs[0]], want, rtol=1e-5, atol=1e-5)
    # int8 stays close to the float model
    fl = run_reference(g, xin)[g.outputs[0]]
    assert np.abs(out[g.outputs[0]] - fl).max() < 0.05 * np.abs(fl).max()
    assert [(r.m, r.k, r.n) for r in s.records] == [(10, 40, 30), (10, 30, 7)]
    assert all(r.total_cycles > 0 and r.energy_pj > 0 for r in s.records)


def test_fused_groups_are_unfused_onto_the_array():
    from llmc.passes import run_passes

    g = _mlp(2)
    gf, _ = run_passes(g, level="O3")
    rng = np.random.default_rng(3)
    cal = [{"x": rng.standard_normal((2, 5, 40)).astype(np.float32)}]
    res = build(gf, systolic_config="tpu-like", calibration=cal)
    assert len(res.array_layers) == 2
    xin = {"x": rng.standard_normal((2, 5, 40)).astype(np.float32)}
    with runtime_hook.profile(keep_operands=True) as s:
        out = run(res, xin)
    assert_layers_bit_exact(res, s)
    np.testing.assert_allclose(out[gf.outputs[0]], run_reference(res.graph, xin)[gf.outputs[0]],
                               rtol=1e-5, atol=1e-5)


def test_float_matmuls_need_calibration():
    with pytest.raises(InputError, match="calibration"):
        prepare_graph(_mlp())


def test_conv_im2col_bit_exact():
    rng = np.random.default_rng(7)
    g = Graph("cnn")
    x = g.add_input("x", "float32", (2, 3, 9, 9))
    w = g.add_constant(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = g.add_constant(rng.standard_normal(8).astype(np.float32), "b")
    w2 = g.add_constant(rng.standard_normal((4, 8, 2, 2)).astype(np.float32), "w2")
    h, = g.add_node("conv", [x, w, b], {"strides": [2, 2], "pads": [1, 1, 1, 1],
                                        "dilations": [1, 1], "group": 1})
    h, = g.add_node("relu", [h])
    y, = g.add_node("conv", [h, w2], {"strides": [1, 1], "pads": [0, 1, 0, 1],
                                      "dilations": [2, 1], "group": 1})
    g.set_outputs([y])
    cal = [{"x": rng.standard_normal((2, 3, 9, 9)).astype(np.float32)}]
    res = build(g, systolic_config={"base": "edge", "dataflow": "os"}, calibration=cal)
    assert [layer["op"] for layer in res.array_layers] == ["conv", "conv"]
    xin = {"x": rng.standard_normal((2, 3, 9, 9)).astype(np.float32)}
    with runtime_hook.profile(keep_operands=True) as s:
        out = run(res, xin)[y]
    assert_layers_bit_exact(res, s)
    assert [(r.m, r.k, r.n) for r in s.records] == [(2 * 5 * 5, 27, 8), (2 * 3 * 6, 32, 4)]
    np.testing.assert_allclose(out, run_reference(res.graph, xin)[y], rtol=1e-5, atol=1e-5)
    fl = run_reference(g, xin)[y]
    assert np.abs(out - fl).max() < 0.05 * np.abs(fl).max()


@pytest.mark.parametrize("df", ["ws", "os"])
def test_bf16_option(df):
    g = _mlp(5)
    res = build(g, systolic_config={"base": "edge", "dataflow": df}, precision="bf16")
    assert res.systolic["precision"] == "bf16"
    assert [layer["op"] for layer in res.array_layers] == ["linear_bf16"] * 2
    xin = {"x": np.random.default_rng(6).standard_normal((2, 5, 40)).astype(np.float32)}
    with runtime_hook.profile(keep_operands=True) as s:
        out = run(res, xin)[g.outputs[0]]
    # each array call equals the bf16 reference (the array's fp32 summation order) bit for bit
    nodes = {n.name: n for n in res.graph.nodes}
    for name, x, _xq, w, _acc, y in s.operands:
        node = nodes[name]
        ins = [x] + [res.graph.constants[i] for i in node.inputs[1:] if i]
        np.testing.assert_array_equal(y, get_op(node.op).reference(ins, node.attrs)[0])
    assert s.records[0].sram_read_bytes == 2 * (s.records[0].ifmap_sram_reads +
                                                s.records[0].filter_sram_reads)
    np.testing.assert_allclose(out, run_reference(res.graph, xin)[g.outputs[0]], rtol=1e-5,
                               atol=1e-5)
    fl = run_reference(g, xin)[g.outputs[0]]
    assert np.abs(out - fl).max() < 0.02 * np.abs(fl).max()
