"""x86 backend: every lowered op against the numpy reference, symbolic dims, schedules.

Each test builds one graph (many small ops batched together: CI has 2 cores) and compares
``x86.run(x86.build(g))`` with ``llmc.interpreter.run_reference(g, ...)``.
"""
from __future__ import annotations

import numpy as np
import pytest

from llmc import dims as D
from llmc.backends import lowering
from llmc.backends import x86
from llmc.errors import BackendError
from llmc.interpreter import run_reference
from llmc.ir import Graph

RNG = np.random.default_rng(0)


def rand(*shape, lo=-2.0, hi=2.0, dtype="float32"):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def check(g: Graph, inputs: dict, rtol=1e-5, atol=1e-5, result=None):
    """Build (unless given), run and compare every output with the reference."""
    g.verify()
    result = result or x86.build(g)
    assert "none" not in result.schedules.values(), result.schedules
    got = x86.run(result, inputs, g.constants)
    want = run_reference(g, inputs)
    for name in g.outputs:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        if want[name].dtype.kind in "fc":
            np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    return result


UNARY_ANY = ["neg", "abs", "exp", "tanh", "sigmoid", "relu", "erf", "sin", "cos", "atan",
             "sinh", "cosh", "asinh", "floor", "ceil", "round", "sign", "softplus", "softsign",
             "silu", "mish", "hard_swish", "identity"]
UNARY_POS = ["log", "sqrt", "rsqrt", "reciprocal"]
UNARY_UNIT = ["asin", "acos", "atanh", "tan"]


def test_unary_float_ops():
    g = Graph("unary")
    x = g.add_input("x", "float32", [3, 37])
    p = g.add_input("p", "float32", [3, 37])
    u = g.add_input("u", "float32", [3, 37])
    outs = [g.add_node(op, [x])[0] for op in UNARY_ANY]
    outs += [g.add_node(op, [p])[0] for op in UNARY_POS]
    outs += [g.add_node(op, [u])[0] for op in UNARY_UNIT]
    one = g.add_constant(np.ones((), np.float32), "one")
    outs += g.add_node("acosh", [g.add_node("add", [p, one])[0]])
    outs += g.add_node("gelu", [x], {"approximate": "none"})
    outs += g.add_node("gelu", [x], {"approximate": "tanh"})
    outs += g.add_node("leaky_relu", [x], {"alpha": 0.1})
    outs += g.add_node("elu", [x], {"alpha": 0.7})
    outs += g.add_node("selu", [x], {"alpha": 1.6, "gamma": 1.05})
    outs += g.add_node("celu", [x], {"alpha": 1.3})
    outs += g.add_node("thresholded_relu", [x], {"alpha": 0.5})
    outs += g.add_node("hard_sigmoid", [x], {"alpha": 0.2, "beta": 0.5})
    outs += g.add_node("shrink", [x], {"bias": 0.1, "lambd": 0.5})
    outs += g.add_node("clip", [x], {"min": -0.5, "max": 1.0})
    outs += g.add_node("clip", [x], {"min": None, "max": 0.3})
    g.set_outputs(outs)
    xs = rand(3, 37, lo=-3, hi=3)
    xs[0, :4] = [0.5, 1.5, -2.5, 2.5]  # round half to even
    check(g, {"x": xs, "p": rand(3, 37, lo=0.1, hi=3), "u": rand(3, 37, lo=-0.9, hi=0.9)},
          rtol=2e-5, atol=2e-5)


def test_float_predicates_and_logic():
    g = Graph("pred")
    x = g.add_input("x", "float32", [10])
    a = g.add_input("a", "bool", [2, 10])
    outs = [g.add_node("isnan", [x])[0], g.add_node("isinf", [x])[0],
            g.add_node("isinf", [x], {"detect_positive": 0, "detect_negative": 1})[0],
            g.add_node("logical_not", [a])[0]]
    b = g.add_node("less", [x, g.add_constant(np.zeros((), np.float32))])[0]
    outs += [g.add_node(op, [a, b])[0] for op in ("logical_and", "logical_or", "logical_xor")]
    g.set_outputs(outs)
    xs = np.array([0, 1, -1, np.inf, -np.inf, np.nan, 2, -3, 5, np.nan], np.float32)
    check(g, {"x": xs, "a": RNG.random((2, 10)) > 0.5})


def test_binary_float_broadcast():
    g = Graph("bin")
    a = g.add_input("a", "float32", [2, 1, 5])
    b = g.add_input("b", "float32", [3, 5])
    p = g.add_input("p", "float32", [2, 1, 5])
    outs = [g.add_node(op, [a, b])[0] for op in
            ("add", "sub", "mul", "div", "maximum", "minimum", "equal", "less", "less_equal",
             "greater", "greater_equal")]
    outs += g.add_node("pow", [p, b])
    outs += g.add_node("mod", [a, b], {"fmod": 0})
    outs += g.add_node("mod", [a, b], {"fmod": 1})
    outs += g.add_node("prelu", [a, g.add_constant(rand(5), "slope")])
    cond = g.add_node("greater", [a, b])[0]
    outs += g.add_node("where", [cond, a, b])
    g.set_outputs(outs)
    check(g, {"a": rand(2, 1, 5), "b": rand(3, 5, lo=0.5, hi=2) * np.sign(rand(3, 5)),
              "p": rand(2, 1, 5, lo=0.1, hi=2)}, rtol=1e-5, atol=1e-5)


def test_binary_int_semantics():
    g = Graph("ints")
    a = g.add_input("a", "int32", [12])
    b = g.add_input("b", "int32", [12])
    outs = [g.add_node(op, [a, b])[0] for op in ("add", "sub", "mul", "div", "maximum",
                                                 "bitwise_and", "bitwise_or", "bitwise_xor")]
    outs += g.add_node("mod", [a, b], {"fmod": 0})
    outs += g.add_node("mod", [a, b], {"fmod": 1})
    outs += g.add_node("bitwise_not", [a])
    sh = g.add_constant(np.array([0, 1, 2, 3] * 3, np.int32), "sh")
    outs += g.add_node("bit_shift", [g.add_node("abs", [a])[0], sh], {"direction": "left"})
    outs += g.add_node("bit_shift", [g.add_node("abs", [a])[0], sh], {"direction": "right"})
    outs += g.add_node("abs", [a])
    outs += g.add_node("neg", [a])
    g.set_outputs(outs)
    av = np.array([7, -7, 7, -7, 0, 5, 100, -100, 3, -1, 9, -9], np.int32)
    bv = np.array([2, 2, -2, -2, 3, 7, -7, 7, 3, 5, -4, 4], np.int32)
    check(g, {"a": av, "b": bv})


def test_cast():
    g = Graph("cast")
    x = g.add_input("x", "float32", [8])
    i = g.add_input("i", "int64", [8])
    outs = [g.add_node("cast", [x], {"to": t})[0] for t in ("int32", "int64", "bool", "float16")]
    outs += [g.add_node("cast", [i], {"to": t})[0] for t in ("float32", "bool", "int8")]
    g.set_outputs(outs)
    xs = np.array([-2.7, -0.5, 0.0, 0.4, 1.5, 2.9, -1.0, 7.25], np.float32)
    check(g, {"x": xs, "i": np.array([-3, 0, 1, 2, 127, -128, 5, 0], np.int64)})


def test_matmul_variants():
    g = Graph("mm")
    a = g.add_input("a", "float32", [2, 1, 4, 8])
    b = g.add_input("b", "float32", [3, 8, 5])
    v = g.add_input("v", "float32", [8])
    x = g.add_input("x", "float32", [2, 3, 8])
    outs = list(g.add_node("matmul", [a, b]))
    outs += g.add_node("matmul", [v, b])
    outs += g.add_node("matmul", [x, g.add_node("reshape", [v], {"shape": [8]})[0]])
    w = g.add_constant(rand(8, 40), "w")  # N not a multiple of the 32-wide panel
    outs += g.add_node("matmul", [x, w])
    outs += g.add_node("matmul", [x, g.add_constant(rand(8, 64), "w2")])
    g.set_outputs(outs)
    r = check(g, {"a": rand(2, 1, 4, 8), "b": rand(3, 8, 5), "v": rand(8), "x": rand(2, 3, 8)},
              rtol=1e-4, atol=1e-4)
    assert sorted(r.schedules.values()).count("matmul_packed") == 2
    assert set(r.params) == set(r.param_names) == {"w__packed", "w2__packed"}


def test_batched_matmul_update_loop_stays_vectorized():
    """Both operands computed (unfused attention): the default schedule's update loop is the
    vector loop (a later generic pass once re-split it and lost it: 2 GFLOP/s)."""
    from tvm import tirx

    from llmc.backends.relax_builder import build_relax
    from llmc.backends.x86.schedule import schedule_func

    g = Graph("bmm")
    y = g.add_node("matmul", [g.add_input("a", "float32", [1, 12, 128, 32]),
                              g.add_input("b", "float32", [1, 12, 32, 128])])
    g.set_outputs(y)
    (func,) = [f for f in build_relax(g).mod.functions.values() if isinstance(f, tirx.PrimFunc)]
    new, how = schedule_func(func, "matmul")
    text = new.script()
    update = text[text.index('T.sblock("matmul_update")') - 400:text.index('T.sblock("matmul_update")')]
    assert how == "matmul" and "T.vectorized(T.int64(16))" in update, text


def test_half_precision_ops():
    """float16 in and out, computed in float32 inside the kernels (as the reference does)."""
    g = Graph("half")
    x = g.add_input("x", "float16", [4, 16])
    w = g.add_input("w", "float16", [16, 8])
    outs = list(g.add_node("matmul", [x, w]))
    outs += g.add_node("softmax", [x], {"axis": 1})
    outs += g.add_node("layer_norm", [x, g.add_constant(rand(16, dtype="float16"), "s")],
                       {"axis": 1, "epsilon": 1e-5})
    outs += g.add_node("gelu", [x], {"approximate": "tanh"})
    outs += g.add_node("add", [x, x])
    g.set_outputs(outs)
    check(g, {"x": rand(4, 16, dtype="float16"), "w": rand(16, 8, dtype="float16")},
          rtol=2e-3, atol=2e-3)


def test_matmul_large_correct():
    """128x1024 @ 1024x4096 with the packed, register-tiled schedule."""
    g = Graph("big")
    x = g.add_input("x", "float32", [128, 1024])
    w = g.add_constant(rand(1024, 4096, lo=-1, hi=1), "w")
    g.set_outputs(g.add_node("matmul", [x, w]))
    r = x86.build(g)
    assert r.schedules == {"matmul": "matmul_packed"}
    xs = rand(128, 1024, lo=-1, hi=1)
    got = x86.run(r, {"x": xs}, g.constants)[g.outputs[0]]
    want = xs.astype(np.float64) @ g.constants[w].astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_symbolic_batch_compiled_once():
    """A transformer-ish block with dims batch, seq: one build, run at two sizes."""
    bt, sq = D.sym("batch"), D.sym("seq")
    g = Graph("sym")
    x = g.add_input("x", "float32", [bt, sq, 16])
    h = g.add_node("layer_norm", [x, g.add_constant(rand(16), "ln_s"),
                                  g.add_constant(rand(16), "ln_b")],
                   {"axis": 2, "epsilon": 1e-5})[0]
    h = g.add_node("matmul", [h, g.add_constant(rand(16, 48), "w_qkv")])[0]
    q, k, v = g.add_node("split", [h], {"axis": 2, "sizes": [16, 16, 16]}, num_outputs=3)
    q4 = g.add_node("transpose", [g.add_node("reshape", [q], {"shape": [bt, sq, 2, 8]})[0]],
                    {"perm": [0, 2, 1, 3]})[0]
    k4 = g.add_node("transpose", [g.add_node("reshape", [k], {"shape": [bt, sq, 2, 8]})[0]],
                    {"perm": [0, 2, 1, 3]})[0]
    v4 = g.add_node("transpose", [g.add_node("reshape", [v], {"shape": [bt, sq, 2, 8]})[0]],
                    {"perm": [0, 2, 1, 3]})[0]
    att = g.add_node("attention", [q4, k4, v4], {"scale": None, "is_causal": True})[0]
    kt = g.add_node("transpose", [k4], {"perm": [0, 1, 3, 2]})[0]
    s = g.add_node("softmax", [g.add_node("matmul", [q4, kt])[0]], {"axis": 3})[0]
    pv = g.add_node("matmul", [s, v4])[0]
    o = g.add_node("gelu", [g.add_node("add", [att, pv])[0]], {"approximate": "none"})[0]
    red = g.add_node("reduce_mean", [o], {"axes": [1, 3], "keepdims": 0})[0]
    n = g.add_node("dims_tensor", [], {"values": [bt, sq * 2], "dtype": "int64"})[0]
    g.set_outputs([o, red, n])
    r = x86.build(g)
    for b, s_ in ((1, 3), (3, 10)):
        check(g, {"x": rand(b, s_, 16)}, rtol=1e-4, atol=1e-4, result=r)


def test_norms_and_softmax():
    g = Graph("norms")
    x = g.add_input("x", "float32", [2, 3, 4, 5])
    outs = list(g.add_node("softmax", [x], {"axis": 1}))
    outs += g.add_node("log_softmax", [x], {"axis": 3})
    outs += g.add_node("layer_norm", [x, g.add_constant(rand(4, 5), "s")], {"axis": 2,
                                                                           "epsilon": 1e-5})
    outs += g.add_node("rms_norm", [x, g.add_constant(rand(5), "rs")], {"axis": 3,
                                                                       "epsilon": 1e-6})
    outs += g.add_node("batch_norm", [x] + [g.add_constant(rand(3, lo=0.5, hi=2), n)
                                            for n in ("g", "b", "m", "v")], {"epsilon": 1e-5})
    outs += g.add_node("hardmax", [x], {"axis": 2})
    outs += g.add_node("instance_norm", [x, g.add_constant(rand(3), "is"),
                                         g.add_constant(rand(3), "ib")], {"epsilon": 1e-5})
    g.set_outputs(outs)
    check(g, {"x": rand(2, 3, 4, 5)}, rtol=1e-4, atol=1e-4)


def test_reductions():
    g = Graph("red")
    x = g.add_input("x", "float32", [3, 4, 5])
    p = g.add_input("p", "float32", [3, 4, 5])
    outs = []
    for op in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod",
               "reduce_l1", "reduce_l2", "reduce_sum_square", "reduce_log_sum_exp"):
        outs += g.add_node(op, [x], {"axes": [1], "keepdims": 1})
        outs += g.add_node(op, [x], {"axes": [0, 2], "keepdims": 0})
    outs += g.add_node("reduce_log_sum", [p], {"axes": [], "keepdims": 0})
    outs += g.add_node("argmax", [x], {"axis": 1, "keepdims": 1, "select_last_index": 0})
    outs += g.add_node("argmin", [x], {"axis": 2, "keepdims": 0, "select_last_index": 1})
    t = g.add_input("t", "float32", [2, 6])
    outs += g.add_node("argmax", [t], {"axis": 1, "keepdims": 0, "select_last_index": 1})
    outs += g.add_node("argmax", [t], {"axis": 1, "keepdims": 0, "select_last_index": 0})
    outs += g.add_node("cumsum", [x], {"axis": 1, "exclusive": 0, "reverse": 0})
    outs += g.add_node("cumsum", [x], {"axis": 2, "exclusive": 1, "reverse": 1})
    g.set_outputs(outs)
    ties = np.array([[1, 3, 3, 0, 3, 2], [5, 5, 1, 1, 0, 5]], np.float32)
    check(g, {"x": rand(3, 4, 5), "p": rand(3, 4, 5, lo=0.1, hi=1), "t": ties},
          rtol=1e-4, atol=1e-4)


def test_shape_ops():
    g = Graph("shape")
    x = g.add_input("x", "float32", [2, 3, 4])
    outs = list(g.add_node("reshape", [x], {"shape": [6, 4]}))
    outs += g.add_node("transpose", [x], {"perm": [2, 0, 1]})
    outs += g.add_node("concat", [x, x, g.add_node("neg", [x])[0]], {"axis": 1})
    outs += g.add_node("split", [x], {"axis": 2, "sizes": [1, 3]}, num_outputs=2)
    outs += g.add_node("slice", [x], {"axes": [1, 2], "starts": [2, 0], "ends": [-1, 4],
                                      "steps": [-1, 2]})
    u = g.add_node("unsqueeze", [x], {"axes": [0, 3]})[0]
    outs += [u] + g.add_node("squeeze", [u], {"axes": [0]})
    outs += g.add_node("expand", [g.add_node("reshape", [x], {"shape": [2, 1, 3, 4]})[0]],
                       {"shape": [2, 5, 3, 4]})
    idx = g.add_constant(np.array([[0, -1], [2, 1]], np.int64), "idx")
    outs += g.add_node("gather", [x, idx], {"axis": 1})
    outs += g.add_node("gather", [x, g.add_constant(np.array(-1, np.int64), "i0")], {"axis": 0})
    ge = g.add_constant(np.array([[[0, -1, 2, 1]] * 3] * 2, np.int64), "ge")
    outs += g.add_node("gather_elements", [x, ge], {"axis": 2})
    gi = g.add_constant(np.array([[1, -1], [0, 2]], np.int64), "gnd")
    outs += g.add_node("gather_nd", [x, gi], {"batch_dims": 0})
    gb = g.add_constant(np.array([[[2], [0]], [[-1], [1]]], np.int64), "gndb")
    outs += g.add_node("gather_nd", [x, gb], {"batch_dims": 1})
    su = g.add_constant(rand(2, 3, 2), "su")
    si = g.add_constant(np.array([[[0, 3], [-1, 1], [2, 2]]] * 2, np.int64), "si")
    for red in ("none", "add", "max"):
        outs += g.add_node("scatter_elements", [x, si, su], {"axis": 2, "reduction": red})
    ni = g.add_constant(np.array([[1, -1], [0, 0]], np.int64), "ni")
    nu = g.add_constant(rand(2, 4), "nu")
    for red in ("none", "mul"):
        outs += g.add_node("scatter_nd", [x, ni, nu], {"reduction": red})
    for mode in ("constant", "edge", "reflect", "wrap"):
        outs += g.add_node("pad", [x], {"pads": [0, 1, 2, 0, 2, 1], "mode": mode, "value": 1.5})
    outs += g.add_node("tile", [x], {"repeats": [1, 2, 3]})
    outs += g.add_node("trilu", [x], {"upper": True, "k": 1})
    outs += g.add_node("trilu", [x], {"upper": False, "k": -1})
    outs += g.add_node("one_hot", [g.add_constant(np.array([0, 2, -1], np.int64), "oh")],
                       {"depth": 4, "axis": 0, "on_value": 3.0, "off_value": -1.0,
                        "dtype": "float32"})
    outs += g.add_node("range", [], {"start": 2, "limit": 11, "delta": 3, "dtype": "int64"})
    outs += g.add_node("range", [], {"start": 0.5, "limit": 2.0, "delta": 0.25,
                                     "dtype": "float32"})
    outs += g.add_node("full", [], {"shape": [2, 3], "value": 7, "dtype": "int32"})
    y = g.add_input("y", "float32", [1, 8, 2, 3])
    outs += g.add_node("depth_to_space", [y], {"blocksize": 2, "mode": "DCR"})
    outs += g.add_node("depth_to_space", [y], {"blocksize": 2, "mode": "CRD"})
    outs += g.add_node("space_to_depth", [y], {"blocksize": 1})
    z = g.add_input("z", "float32", [1, 2, 4, 6])
    outs += g.add_node("space_to_depth", [z], {"blocksize": 2})
    g.set_outputs(outs)
    check(g, {"x": rand(2, 3, 4), "y": rand(1, 8, 2, 3), "z": rand(1, 2, 4, 6)})


def test_conv_and_pools():
    g = Graph("cnn")
    x = g.add_input("x", "float32", [D.sym("n"), 4, 9, 10])
    w = g.add_constant(rand(6, 2, 3, 3), "w")
    b = g.add_constant(rand(6), "b")
    outs = list(g.add_node("conv", [x, w, b], {"strides": [2, 1], "pads": [1, 0, 1, 2],
                                               "dilations": [1, 2], "group": 2}))
    outs += g.add_node("conv", [x, g.add_constant(rand(8, 4, 1, 1), "w1")],
                       {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1})
    outs += g.add_node("max_pool", [x], {"kernel": [3, 3], "strides": [2, 2],
                                         "pads": [1, 1, 1, 1], "dilations": [1, 1],
                                         "ceil_mode": 0})
    outs += g.add_node("avg_pool", [x], {"kernel": [2, 3], "strides": [2, 2],
                                         "pads": [1, 1, 0, 1], "ceil_mode": 0,
                                         "count_include_pad": 0})
    outs += g.add_node("avg_pool", [x], {"kernel": [2, 3], "strides": [2, 2],
                                         "pads": [1, 1, 0, 1], "ceil_mode": 0,
                                         "count_include_pad": 1})
    outs += g.add_node("global_avg_pool", [x])
    outs += g.add_node("global_max_pool", [x])
    outs += g.add_node("conv_transpose", [x, g.add_constant(rand(4, 3, 3, 3), "wt")],
                       {"strides": [2, 2], "pads": [1, 0, 1, 1], "dilations": [1, 1],
                        "group": 1, "output_padding": [1, 0]})
    s = g.add_input("s", "float32", [2, 3, 12])
    outs += g.add_node("conv", [s, g.add_constant(rand(5, 3, 4), "w1d")],
                       {"strides": [1], "pads": [2, 1], "dilations": [1], "group": 1})
    outs += g.add_node("lrn", [x], {"size": 3, "alpha": 1e-3, "beta": 0.75, "bias": 1.0})
    g.set_outputs(outs)
    r = check(g, {"x": rand(2, 4, 9, 10), "s": rand(2, 3, 12)}, rtol=1e-4, atol=1e-4)
    check(g, {"x": rand(1, 4, 9, 10), "s": rand(2, 3, 12)}, rtol=1e-4, atol=1e-4, result=r)


def test_attention_mask_and_gqa():
    g = Graph("attn")
    q = g.add_input("q", "float32", [2, 4, 5, 8])
    k = g.add_input("k", "float32", [2, 2, 7, 8])
    v = g.add_input("v", "float32", [2, 2, 7, 6])
    m = g.add_input("m", "bool", [5, 7])
    f = g.add_input("f", "float32", [2, 1, 5, 7])
    outs = list(g.add_node("attention", [q, k, v, m], {"scale": 0.3, "is_causal": False}))
    outs += g.add_node("attention", [q, k, v, f], {"scale": None, "is_causal": True})
    outs += g.add_node("attention", [q, k, v], {"scale": None, "is_causal": False})
    g.set_outputs(outs)
    mask = RNG.random((5, 7)) > 0.3
    mask[:, 0] = True
    check(g, {"q": rand(2, 4, 5, 8), "k": rand(2, 2, 7, 8), "v": rand(2, 2, 7, 6), "m": mask,
              "f": rand(2, 1, 5, 7)}, rtol=1e-4, atol=1e-4)


def test_unsupported_op_names_node(monkeypatch):
    monkeypatch.delitem(lowering.LOWERINGS, "relu")
    g = Graph("bad")
    x = g.add_input("x", "float32", [4])
    g.set_outputs(g.add_node("relu", [x], name="my_relu"))
    with pytest.raises(BackendError, match="my_relu.*relu"):
        x86.build(g)


def test_host_target_and_override():
    t = x86.host_target()
    assert t["kind"] == "llvm" and t["mcpu"]
    assert x86.host_target("skylake-avx512")["mcpu"] == "skylake-avx512"


def test_dim_expressions_to_prim():
    env = lowering.DimEnv()
    s = D.sym("seq")
    exprs = [s + 1, 2 * s, D.floordiv(s, 2), D.parse_dim("Mod(seq, 3)"),
             D.parse_dim("Max(seq, 4)"), D.parse_dim("Min(seq, 4)"),
             D.parse_dim("ceiling(seq/4)"), D.dim(s * s - 1)]
    import tvm
    for e in exprs:
        p = env.prim(e)
        for val in (1, 5, 9):
            ana = tvm.sym.Analyzer()
            ana.bind(env.var("seq"), tvm.tirx.IntImm("int64", val))
            got = ana.simplify(p)
            assert int(got) == D.evaluate(e, {"seq": val}), (e, val)


def test_export_library_and_reload(tmp_path):
    """The lead's artifact path: export the executable, load it back, run at two sizes."""
    import tvm

    g = Graph("exp")
    x = g.add_input("x", "float32", [D.sym("n"), 8])
    y = g.add_node("matmul", [x, g.add_constant(rand(8, 32), "w")])[0]
    g.set_outputs(g.add_node("relu", [y]))
    r = x86.build(g)
    path = tmp_path / "model.so"
    r.executable.export_library(str(path))
    vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
    for n in (1, 5):
        xs = rand(n, 8)
        args = [tvm.runtime.tensor(xs)] + [tvm.runtime.tensor(r.params[p]) for p in r.param_names]
        out = vm["main"](*args)
        assert len(out) == 1  # always a tuple
        np.testing.assert_allclose(out[0].numpy(), run_reference(g, {"x": xs})[g.outputs[0]],
                                   rtol=1e-5, atol=1e-5)


def test_runtime_uses_all_cores():
    import os

    import tvm

    assert x86.set_num_threads() == (int(os.environ["TVM_NUM_THREADS"]))
    assert tvm.runtime.num_threads() == x86.set_num_threads()
