"""simplify: each identity and pattern on its target, and near misses left alone."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmc import dims as D
from llmc.ir import Graph

from passes_testutil import check, const, ops

SIMPLIFY = ["simplify", "dce"]


def _one(build, shape=("b", 4), dtype="float32") -> Graph:
    """A graph x -> build(g, x) -> relu -> y (the relu keeps the result an intermediate)."""
    g = Graph("t")
    x = g.add_input("x", dtype, list(shape))
    v = build(g, x)
    (y,) = g.add_node("neg" if dtype != "bool" else "logical_not", [v], outputs=["y"])
    g.set_outputs([y])
    return g


IDENTITIES = {
    "add0": lambda g, x: g.add_node("add", [x, const(g, 0.0)])[0],
    "0add": lambda g, x: g.add_node("add", [const(g, np.zeros(4)), x])[0],
    "sub0": lambda g, x: g.add_node("sub", [x, const(g, 0.0)])[0],
    "mul1": lambda g, x: g.add_node("mul", [const(g, [1.0]), x])[0],
    "div1": lambda g, x: g.add_node("div", [x, const(g, 1.0)])[0],
    "cast_same": lambda g, x: g.add_node("cast", [x], {"to": "float32"})[0],
    "identity": lambda g, x: g.add_node("identity", [x])[0],
    "expand_same": lambda g, x: g.add_node("expand", [x], {"shape": list(g.types[x].shape)})[0],
    "reshape_same": lambda g, x: g.add_node("reshape", [x], {"shape": list(g.types[x].shape)})[0],
    "transpose_inverse": lambda g, x: g.add_node(
        "transpose", [g.add_node("transpose", [x], {"perm": [1, 0]})[0]], {"perm": [1, 0]})[0],
    "slice_full": lambda g, x: g.add_node("slice", [x], {"axes": [1], "starts": [0], "ends": [4],
                                                         "steps": [1]})[0],
    "concat_one": lambda g, x: g.add_node("concat", [x], {"axis": 0})[0],
}


@pytest.mark.parametrize("name", sorted(IDENTITIES))
def test_identity_removed(name):
    g = _one(IDENTITIES[name])
    out = check(g, passes=SIMPLIFY)
    assert ops(out) == {"neg": 1}, name
    assert out.nodes[0].inputs == ["x"]


NEAR_MISSES = {
    # broadcasting enlarges the result: x + 0 is not x
    "add0_broadcast": (lambda g, x: g.add_node("add", [x, const(g, np.zeros((3, 1, 4)))])[0],
                       {"add": 1}),
    "mul_almost_1": (lambda g, x: g.add_node("mul", [x, const(g, 1.0001)])[0], {"mul": 1}),
    "add_nonzero": (lambda g, x: g.add_node("add", [x, const(g, [0.0, 0.0, 0.0, 1.0])])[0],
                    {"add": 1}),
    "cast_other": (lambda g, x: g.add_node("cast", [
        g.add_node("cast", [x], {"to": "float16"})[0]], {"to": "float32"})[0], {"cast": 2}),
    "expand_bigger": (lambda g, x: g.add_node("expand", [x], {"shape": [2, "b", 4]})[0],
                      {"expand": 1}),
    "transpose_not_inverse": (lambda g, x: g.add_node("transpose", [
        g.add_node("reshape", [x], {"shape": [1, "b", 4]})[0]], {"perm": [2, 1, 0]})[0],
        {"reshape": 1, "transpose": 1}),
    "slice_part": (lambda g, x: g.add_node("slice", [x], {"axes": [1], "starts": [1],
                                                          "ends": [4], "steps": [1]})[0],
                   {"slice": 1}),
}


@pytest.mark.parametrize("name", sorted(NEAR_MISSES))
def test_near_miss_untouched(name):
    build, expect = NEAR_MISSES[name]
    g = _one(build)
    for n in g.nodes:  # symbolic names written as strings above become symbols
        if "shape" in n.attrs:
            n.attrs["shape"] = [D.dim(s) for s in n.attrs["shape"]]
    out = check(g, passes=SIMPLIFY)
    assert ops(out) == {**expect, "neg": 1}, (name, ops(out))


def test_double_transpose_composes():
    g = _one(lambda g, x: g.add_node("transpose", [
        g.add_node("transpose", [g.add_node("reshape", [x], {"shape": [1, "b", 2, 2]})[0]],
                   {"perm": [1, 2, 3, 0]})[0]], {"perm": [3, 0, 2, 1]})[0])
    g.nodes[0].attrs["shape"] = [D.dim(s) for s in g.nodes[0].attrs["shape"]]
    out = check(g, passes=SIMPLIFY)
    assert ops(out) == {"reshape": 1, "transpose": 1, "neg": 1}


@pytest.mark.parametrize("shape,perm,becomes", [
    (("b", 1, 4, 8), [0, 2, 1, 3], "reshape"),      # decode's heads split: only the 1 moves
    ((1, "b", 1, 8), [2, 1, 3, 0], "reshape"),
    (("b", 2, 4, 8), [0, 2, 1, 3], "transpose"),     # near miss: two real axes swap
    (("b", 1, "s", 8), [2, 1, 0, 3], "transpose"),   # symbolic axes may not be 1: they swap
])
def test_transpose_of_size_one_axes_is_a_reshape(shape, perm, becomes):
    g = _one(lambda g, x: g.add_node("transpose", [x], {"perm": perm})[0], shape=shape)
    out = check(g, passes=SIMPLIFY)
    assert ops(out) == {becomes: 1, "neg": 1}


def test_reshape_chain_becomes_one_reshape():
    def build(g, x):
        (a,) = g.add_node("reshape", [x], {"shape": [2, 2, 3]})
        (b,) = g.add_node("unsqueeze", [a], {"axes": [0]})
        (c,) = g.add_node("squeeze", [b], {"axes": [0]})
        return g.add_node("reshape", [c], {"shape": [3, 4]})[0]
    g = _one(build, shape=(4, 3))
    out = check(g, passes=SIMPLIFY)
    assert ops(out) == {"reshape": 1, "neg": 1}


def test_division_by_constant_becomes_multiplication():
    g = _one(lambda g, x: g.add_node("div", [x, const(g, [2.0, 4.0, 0.5, 3.0])])[0])
    out = check(g, passes=SIMPLIFY)
    assert ops(out) == {"mul": 1, "neg": 1}
    # integer division is not a multiplication, division by a tensor input is not rewritten
    gi = _one(lambda g, x: g.add_node("div", [x, const(g, 2, dtype=np.int64)])[0],
              dtype="int64")
    assert ops(check(gi, passes=SIMPLIFY)) == {"div": 1, "neg": 1}


def _erf_gelu(order: int):
    def build(g, x):
        if order == 0:   # BERT: x * 0.5 * (1 + erf(x / sqrt2))
            (d,) = g.add_node("div", [x, const(g, math.sqrt(2))])
            (e,) = g.add_node("erf", [d])
            (a,) = g.add_node("add", [e, const(g, 1.0)])
            (m,) = g.add_node("mul", [x, const(g, 0.5)])
            return g.add_node("mul", [m, a])[0]
        if order == 1:   # 0.5 * ((1 + erf(x * 1/sqrt2)) * x)
            (d,) = g.add_node("mul", [const(g, 1 / math.sqrt(2)), x])
            (e,) = g.add_node("erf", [d])
            (a,) = g.add_node("add", [const(g, 1.0), e])
            (m,) = g.add_node("mul", [a, x])
            return g.add_node("mul", [const(g, 0.5), m])[0]
        (d,) = g.add_node("div", [x, const(g, 1.4142135)])  # x * (0.5 * (erf(..) + 1))
        (e,) = g.add_node("erf", [d])
        (a,) = g.add_node("add", [e, const(g, 1.0)])
        (h,) = g.add_node("mul", [const(g, 0.5), a])
        return g.add_node("mul", [x, h])[0]
    return build


@pytest.mark.parametrize("order", [0, 1, 2])
def test_erf_gelu_recognized(order):
    out = check(_one(_erf_gelu(order)), passes=SIMPLIFY)
    assert ops(out) == {"gelu": 1, "neg": 1}
    assert out.nodes[0].attrs == {"approximate": "none"} and out.nodes[0].inputs == ["x"]


def _tanh_gelu(cube: str):
    def build(g, x):
        if cube == "pow":
            (c,) = g.add_node("pow", [x, const(g, 3.0)])
        else:
            (sq,) = g.add_node("mul", [x, x])
            (c,) = g.add_node("mul", [sq, x])
        (k,) = g.add_node("mul", [c, const(g, 0.044715)])
        (s,) = g.add_node("add", [x, k])
        (t,) = g.add_node("mul", [const(g, math.sqrt(2 / math.pi)), s])
        (th,) = g.add_node("tanh", [t])
        (a,) = g.add_node("add", [const(g, 1.0), th])
        (m,) = g.add_node("mul", [const(g, 0.5), x])
        return g.add_node("mul", [m, a])[0]
    return build


@pytest.mark.parametrize("cube", ["pow", "mul"])
def test_tanh_gelu_recognized(cube):
    out = check(_one(_tanh_gelu(cube)), passes=SIMPLIFY)
    assert ops(out) == {"gelu": 1, "neg": 1}
    assert out.nodes[0].attrs == {"approximate": "tanh"}


@pytest.mark.parametrize("swap", [False, True])
def test_silu_recognized(swap):
    def build(g, x):
        (s,) = g.add_node("sigmoid", [x])
        return g.add_node("mul", [s, x] if swap else [x, s])[0]
    out = check(_one(build), passes=SIMPLIFY)
    assert ops(out) == {"silu": 1, "neg": 1}


def test_activation_near_misses():
    def wrong_scale(g, x):  # 0.5*x*(1+erf(x/2)) is not GELU
        (d,) = g.add_node("div", [x, const(g, 2.0)])
        (e,) = g.add_node("erf", [d])
        (a,) = g.add_node("add", [e, const(g, 1.0)])
        (m,) = g.add_node("mul", [x, a])
        return g.add_node("mul", [m, const(g, 0.5)])[0]

    def other_value(g, x):  # x * sigmoid(relu(x)) is not SiLU
        (r,) = g.add_node("relu", [x])
        (s,) = g.add_node("sigmoid", [r])
        return g.add_node("mul", [x, s])[0]

    def wrong_cubic(g, x):  # tanh form with 0.5 instead of 0.044715
        (c,) = g.add_node("pow", [x, const(g, 3.0)])
        (k,) = g.add_node("mul", [c, const(g, 0.5)])
        (s,) = g.add_node("add", [x, k])
        (t,) = g.add_node("mul", [const(g, math.sqrt(2 / math.pi)), s])
        (th,) = g.add_node("tanh", [t])
        (a,) = g.add_node("add", [const(g, 1.0), th])
        (m,) = g.add_node("mul", [const(g, 0.5), x])
        return g.add_node("mul", [m, a])[0]

    for build in (wrong_scale, other_value, wrong_cubic):
        out = check(_one(build), passes=SIMPLIFY)
        assert "gelu" not in ops(out) and "silu" not in ops(out), build.__name__


def test_output_name_survives_when_identity_is_the_output():
    g = Graph("t")
    x = g.add_input("x", "float32", [3])
    (y,) = g.add_node("add", [x, const(g, 0.0)], outputs=["y"])
    (r,) = g.add_node("relu", [x])
    (z,) = g.add_node("mul", [r, const(g, 1.0)], outputs=["z"])
    g.set_outputs([y, z])
    out = check(g, passes=SIMPLIFY)
    assert out.outputs == ["y", "z"]
    # y reads a graph input: it must stay a node (identity); z is the relu renamed
    assert ops(out) == {"identity": 1, "relu": 1}
    assert [n.outputs for n in out.nodes if n.op == "relu"] == [["z"]]
