"""The blocked-layout pass (NCHW -> NCHW{b}c for x86 convs) and its ops.

Golden values come from the numpy reference of the graph before the pass (and PyTorch for the
CNN); the blocked ops' references are checked against the plain ops they replace.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmc.errors import ShapeError
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.ops import get_op
from llmc.ops.layout import pack_conv_weight, to_blocked, to_plain, unpack_conv_weight
from llmc.passes import LEVELS, run_passes
from llmc.passes.fuse import fused_groups
from llmc.passes.layout import (block_convs, cancel_transforms, count_transforms, layout,
                                layout_options)
from llmc.passes.numerics import compare_outputs, random_inputs

from passes_testutil import body_ops, check, ops

CONV = {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1}


def _conv(g: Graph, x: str, cout: int, k: int = 3, stride: int = 1, bias: bool = True,
          seed: int = 0, group: int = 1) -> str:
    cin = g.types[x].shape[1]
    rng = np.random.default_rng(seed)
    w = g.add_constant((rng.standard_normal((cout, cin // group, k, k)) /
                        np.sqrt(cin * k * k)).astype(np.float32), "w")
    ins = [x, w]
    if bias:
        ins.append(g.add_constant(rng.standard_normal(cout).astype(np.float32), "b"))
    p = k // 2
    (y,) = g.add_node("conv", ins, {"strides": [stride, stride], "pads": [p, p, p, p],
                                    "dilations": [1, 1], "group": group})
    return y


def _block(g: Graph, x: str, cout: int, seed: int) -> str:
    """conv-relu-conv + residual add + relu (a ResNet basic block without batch norm)."""
    (y,) = g.add_node("relu", [_conv(g, x, cout, seed=seed)])
    y = _conv(g, y, cout, seed=seed + 1)
    (y,) = g.add_node("add", [y, x])
    (y,) = g.add_node("relu", [y])
    return y


# ----------------------------------------------------------------------------- ops
def test_transform_helpers_round_trip():
    x = np.random.default_rng(0).standard_normal((2, 32, 5, 7)).astype(np.float32)
    xb = to_blocked(x, 16)
    assert xb.shape == (2, 2, 5, 7, 16)
    assert xb[1, 1, 3, 4, 5] == x[1, 16 + 5, 3, 4]
    np.testing.assert_array_equal(to_plain(xb), x)
    w = np.random.default_rng(1).standard_normal((32, 16, 3, 3)).astype(np.float32)
    wp = pack_conv_weight(w, 16, 16)
    assert wp.shape == (2, 1, 3, 3, 16, 16) and wp[1, 0, 2, 1, 3, 4] == w[16 + 4, 3, 2, 1]
    np.testing.assert_array_equal(unpack_conv_weight(wp), w)


def test_conv2d_nchwc_reference_matches_conv():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 32, 9, 9)).astype(np.float32)
    w = rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    attrs = {"strides": [2, 2], "pads": [1, 0, 1, 2], "dilations": [1, 1]}
    (want,) = get_op("conv").reference([x, w, b], attrs)
    (got,) = get_op("conv2d_nchwc").reference(
        [to_blocked(x, 16), pack_conv_weight(w, 16, 16), b], attrs)
    np.testing.assert_allclose(to_plain(got), want, rtol=1e-6)


def test_layout_op_shape_errors_name_the_problem():
    g = Graph("e")
    x = g.add_input("x", "float32", [1, 24, 4, 4])
    with pytest.raises(ShapeError, match="multiple of the block 16"):
        g.add_node("layout_transform", [x], {"src": "NCHW", "dst": "NCHW16c"})
    with pytest.raises(ShapeError, match="unknown layout"):
        g.add_node("layout_transform", [x], {"src": "NCHW", "dst": "NHWC"})


def test_pool2d_nchwc_matches_plain_pools():
    x = np.random.default_rng(3).standard_normal((1, 32, 7, 7)).astype(np.float32)
    for kind, op, extra in (("max", "max_pool", {}), ("avg", "avg_pool", {"count_include_pad": 1})):
        attrs = {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1],
                 "ceil_mode": 0, **extra}
        (want,) = get_op(op).reference([x], attrs)
        (got,) = get_op("pool2d_nchwc").reference([to_blocked(x, 16)], {"kind": kind, **attrs})
        np.testing.assert_allclose(to_plain(got), want, rtol=1e-6)


# ----------------------------------------------------------------------------- the pass
def _cnn(batch=2, width=16) -> Graph:
    g = Graph("cnn")
    x = g.add_input("x", "float32", [batch, 3, 16, 16])
    (y,) = g.add_node("relu", [_conv(g, x, width, seed=1)])  # stem: reads NCHW3c
    y = _block(g, y, width, 2)
    y = _block(g, y, width, 4)
    (y,) = g.add_node("max_pool", [y], {"kernel": [2, 2], "strides": [2, 2], "pads": [0] * 4,
                                         "dilations": [1, 1], "ceil_mode": 0})
    y = _conv(g, y, 2 * width, seed=6)
    scale = g.add_constant(np.linspace(0.5, 1.5, 2 * width, dtype=np.float32)
                           .reshape(1, -1, 1, 1), "scale")
    (y,) = g.add_node("mul", [y, scale])
    (y,) = g.add_node("global_avg_pool", [y])
    g.set_outputs([y])
    return g


def test_pass_is_off_without_an_x86_target():
    g = _cnn()
    out, _ = run_passes(g, passes=["layout"])
    assert ops(out) == ops(g)
    with layout_options("systolic"):
        out, _ = run_passes(g, passes=["layout"])
    assert ops(out) == ops(g)
    assert "layout" in LEVELS["O3"] and LEVELS["O3"].index("layout") < LEVELS["O3"].index("fuse")


def test_layout_keeps_numerics_and_cancels_round_trips():
    g = _cnn()
    with layout_options("x86"):
        out = check(g, passes=["layout"], rtol=1e-5, atol=1e-5)
    c = ops(out)
    assert c["conv2d_nchwc"] == 6 and c["conv"] == 0  # the 3-channel stem reads NCHW3c
    assert c["pool2d_nchwc"] == 1 and c["reduce_mean"] == 1     # global pool keeps the block
    # one transform into the blocked region (the input), one out (the pooled result)
    assert count_transforms(out) == 2
    first = next(n for n in out.nodes if n.op == "layout_transform")
    assert first.inputs == ["x"] and first.attrs["dst"] == "NCHW3c"
    assert not any(n.op == "layout_transform" and out.producers().get(n.inputs[0]) is not None
                   and out.producers()[n.inputs[0]].op == "layout_transform" for n in out.nodes)
    # weights (and the per-channel scale) were re-packed at compile time, the originals dropped
    packed = [n.inputs[1] for n in out.nodes if n.op == "conv2d_nchwc"]
    assert all(out.constants[w].ndim == 6 for w in packed)
    assert out.constants[packed[0]].shape[4] == 3
    assert not any(a.ndim == 4 for a in out.constants.values())


def test_rewrite_then_cancel_counts():
    g = _cnn()
    block_convs(g)
    g.verify()
    inserted = count_transforms(g)
    assert inserted >= 20  # around every blocked op
    removed = cancel_transforms(g)
    g.verify()
    assert count_transforms(g) == 2 and removed == inserted - 2


def test_channel_rule_and_near_misses():
    g = Graph("m")
    x = g.add_input("x", "float32", ["n", 24, 8, 8])
    y = _conv(g, x, 16, seed=1)                    # C_in 24: not a multiple of 16
    y2 = _conv(g, y, 16, seed=2, group=16)         # depthwise: stays
    y3 = _conv(g, y2, 32, seed=3)                  # blocked
    edge = g.add_constant(np.ones((1, 1, 1, 8), np.float32), "edge")
    (y4,) = g.add_node("mul", [y3, edge])          # broadcasts along W: not per channel
    (y5,) = g.add_node("sigmoid", [y3])            # blocked
    g.set_outputs([y4, y5])
    with layout_options("x86"):
        out = check(g, passes=["layout"], inputs=random_inputs(g, seed=0, default_dim=2),
                    atol=1e-5)
    c = ops(out)
    assert c["conv"] == 2 and c["conv2d_nchwc"] == 1 and c["sigmoid"] == 1
    prod = out.producers()
    assert prod[y5].op == "layout_transform" and prod[y4].op == "mul"
    with layout_options("x86", block=8):
        out8, _ = run_passes(g, passes=["layout"])
    assert ops(out8)["conv2d_nchwc"] == 2  # 24 and 16 are multiples of 8 (depthwise stays)
    with layout_options("x86", min_channels=32):
        out32, _ = run_passes(g, passes=["layout"])
    assert ops(out32)["conv2d_nchwc"] == 0


def test_layout_then_fuse_gives_blocked_conv_epilogues():
    g = _cnn()
    with layout_options("x86"):
        out = check(g, passes=["layout", "fuse"], rtol=1e-5, atol=1e-5)
    groups = [(k, body) for _, k, body in fused_groups(out)]
    conv_groups = [body for k, body in groups if k == "conv_epilogue"]
    assert ["conv2d_nchwc", "add", "relu"] in conv_groups
    assert ["conv2d_nchwc", "relu"] in conv_groups
    assert ["conv2d_nchwc", "mul"] in conv_groups


def test_resnet_cnn_transforms_cancel(resnet_model):
    import models
    from llmc.frontends.torch import import_torch

    g = import_torch(resnet_model, (models.resnet_input(2),))
    base, _ = run_passes(g, "O3", disable=["fuse"])
    convs = ops(base)["conv"]
    blocked = block_convs(base.copy())
    inserted = count_transforms(blocked)
    cancel_transforms(blocked)
    with layout_options("x86"):
        out, report = run_passes(g, "O3", verify=True, check_numerics=True, atol=1e-5)
    assert count_transforms(blocked) == count_transforms(out) == 2
    assert inserted > 3 * convs
    c = body_ops(out)
    assert convs == 9 and c["conv"] == 0 and c["conv2d_nchwc"] == 9
    assert "conv2d_nchwc" in next(r.changed for r in report.rows if r.name == "layout")


# ----------------------------------------------------------------------------- properties
@st.composite
def cnn_graphs(draw):
    """Random conv chains: channels around the block, bias or not, elementwise ops with
    per-channel / scalar constants, residual adds, pools, strided and 1x1 convs."""
    g = Graph("p")
    c0 = draw(st.sampled_from([3, 8, 16]))
    x = g.add_input("x", "float32", [draw(st.sampled_from([1, "n"])), c0, 6, 6])
    v, seed = x, 0
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "conv", "unary", "chan", "residual", "pool",
                                     "gpool_tail"]))
        c = g.types[v].shape[1]
        seed += 1
        if kind == "conv":
            cout = draw(st.sampled_from([8, 16, 32]))
            k = draw(st.sampled_from([1, 3]))
            stride = draw(st.sampled_from([1, 1, 2])) if g.types[v].shape[2] >= 4 else 1
            v = _conv(g, v, cout, k=k, stride=stride, bias=draw(st.booleans()), seed=seed)
        elif kind == "unary":
            op = draw(st.sampled_from(["relu", "sigmoid", "silu", "gelu", "clip", "tanh"]))
            attrs = {"min": 0.0, "max": 6.0} if op == "clip" else {}
            (v,) = g.add_node(op, [v], attrs)
        elif kind == "chan":
            shape = draw(st.sampled_from([(1, c, 1, 1), (c, 1, 1), (), (1, 1, 1, 1)]))
            cst = g.add_constant(np.random.default_rng(seed).uniform(0.5, 1.5, shape)
                                 .astype(np.float32), "k")
            op = draw(st.sampled_from(["add", "mul", "sub", "maximum"]))
            (v,) = g.add_node(op, [v, cst] if draw(st.booleans()) else [cst, v])
        elif kind == "residual":
            w = _conv(g, v, c, k=3, seed=seed)
            (v,) = g.add_node("add", [w, v])
        elif kind == "pool" and g.types[v].shape[2] >= 2:
            op = draw(st.sampled_from(["max_pool", "avg_pool"]))
            (v,) = g.add_node(op, [v], {"kernel": [2, 2], "strides": [2, 2], "pads": [0] * 4,
                                        "dilations": [1, 1], "ceil_mode": 0})
        elif kind == "gpool_tail":
            (p,) = g.add_node("global_avg_pool", [v])
            (v,) = g.add_node("add", [v, p])  # broadcast read of the pooled value
    g.set_outputs([v])
    g.verify()
    return g


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cnn_graphs(), st.sampled_from([8, 16]), st.integers(0, 2))
def test_layout_and_fuse_preserve_results(graph, block, seed):
    inputs = random_inputs(graph, seed=seed, default_dim=2)
    want = run_reference(graph, inputs)
    with layout_options("x86", block=block):
        for passes in (["layout"], ["layout", "fuse"], LEVELS["O3"]):
            out, _ = run_passes(graph, passes=passes, verify=True)
            problem = compare_outputs(want, run_reference(out, inputs), rtol=1e-4, atol=1e-4)
            assert not problem, (passes, problem)
            # no blocked -> NCHW -> blocked round trip survives
            prod = out.producers()
            assert not any(n.op == "layout_transform" and n.attrs["dst"] != "NCHW" and
                           getattr(prod.get(n.inputs[0]), "op", "") == "layout_transform"
                           for n in out.nodes)
        # a second run changes nothing (fixed point)
        again = layout(out.copy())
        assert ops(again) == ops(out)
