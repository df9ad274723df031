"""Quantized ops: layouts (int8 VNNI panels, int4 nibbles), numpy references, x86 kernels."""
from __future__ import annotations

import numpy as np
import pytest

from llmc import dims as D
from llmc.backends import x86
from llmc.errors import ShapeError
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.ops.quant import (dequant_int4, pack_int4, pack_int4_params, pack_int8,
                            quantize_activation, unpack_int4, unpack_int4_params, unpack_int8)
from llmc.passes.int4 import quantize_weight_int4

RNG = np.random.default_rng(0)


def test_int8_pack_roundtrip_and_layout():
    wq = RNG.integers(-127, 128, (20, 30)).astype(np.int8)
    p = pack_int8(wq)
    assert p.shape == (2, 8, 16, 4) and p.dtype == np.int8
    np.testing.assert_array_equal(unpack_int8(p, 20, 30), wq)
    assert p[1, 3, 2, 1] == wq[16 + 2, 3 * 4 + 1]
    assert not p[1, :, 4:, :].any() and not p[:, 7, :, 2:].any()  # zero padding


def test_int4_pack_unpack_roundtrip():
    codes = RNG.integers(0, 16, (64, 80)).astype(np.uint8)
    p = pack_int4(codes)
    assert p.shape == (2, 32, 64) and p.dtype == np.uint8  # 80 columns -> two 64-wide panels
    assert p[1, 3, 1] == (codes[6, 64 + 1] | (codes[7, 64 + 1] << 4))
    assert not p[1, :, 16:].any()  # zero padded columns
    np.testing.assert_array_equal(unpack_int4(p, 80), codes)
    s = RNG.standard_normal((2, 80)).astype(np.float16)
    z = RNG.integers(0, 16, (2, 80)).astype(np.uint8)
    ps, pz = pack_int4_params(s, z)
    assert ps.shape == pz.shape == (2, 2, 64) and ps[1, 1, 5] == s[1, 69]
    for got, want in zip(unpack_int4_params(ps, pz, 80), (s, z)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_group_quantization_error(group):
    w = RNG.standard_normal((256, 48)).astype(np.float32)
    packed, s, z = quantize_weight_int4(w, group)
    assert s.shape == (1, 256 // group, 64) and s.dtype == np.float16 and z.max() <= 15
    wd = dequant_int4(packed, s, z, group, 48)
    # round to nearest: error at most half a step (+ fp16 rounding of the scale)
    step = np.repeat(unpack_int4_params(s, z, 48)[0].astype(np.float32), group, axis=0)
    assert np.all(np.abs(wd - w) <= 0.5 * step * 1.01 + 1e-6)


def _int8_graph(M, K, N, batch, smooth=True):
    g = Graph("q8")
    x = g.add_input("x", "float32", [batch, M, K])
    wq = RNG.integers(-127, 128, (N, K)).astype(np.int8)
    ins = [x, g.add_constant(pack_int8(wq), "w"),
           g.add_constant(RNG.uniform(1e-3, 1e-2, N).astype(np.float32), "s"),
           g.add_constant(wq.astype(np.int32).sum(1).astype(np.int32), "cs"),
           g.add_constant(RNG.standard_normal(N).astype(np.float32), "b")]
    if smooth:
        ins.append(g.add_constant(RNG.uniform(0.5, 2, K).astype(np.float32), "sm"))
    g.set_outputs(g.add_node("qlinear_int8", ins, {"n": N, "k": K, "x_scale": 0.02}))
    return g, wq


def test_qlinear_int8_reference_is_integer_matmul():
    g, wq = _int8_graph(3, 10, 7, 2, smooth=False)
    x = RNG.standard_normal((2, 3, 10)).astype(np.float32)
    y = run_reference(g, {"x": x})[g.outputs[0]]
    xq = np.clip(np.round(x / np.float32(0.02)), -127, 127)
    want = (xq @ wq.T.astype(np.float64)) * 0.02 * g.constants["s"] + g.constants["b"]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-4)
    assert quantize_activation(np.array([0.01, 0.03, -0.01], np.float32), 0.02).tolist() == \
        [0, 2, -0]  # round half to even


@pytest.mark.parametrize("M,K,N,sym", [(5, 384, 384, False), (7, 30, 20, True), (1, 64, 32, False)])
def test_qlinear_int8_x86_matches_reference(M, K, N, sym):
    g, _ = _int8_graph(M, K, N, D.sym("b") if sym else 2)
    r = x86.build(g)
    assert set(r.schedules.values()) == {"quant_int8"}, r.schedules
    for b in ([2, 3] if sym else [2]):
        x = {"x": RNG.standard_normal((b, M, K)).astype(np.float32)}
        got = x86.run(r, x, g.constants)[g.outputs[0]]
        want = run_reference(g, x)[g.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("M,K,N,G,sym", [
    (5, 384, 384, 32, True),    # tail rows only (the decode GEMV path), symbolic batch
    (1, 256, 48, 64, False),    # M = 1 GEMV, N not a multiple of the 64-wide panel
    (9, 256, 64, 128, True),    # full 8-row tiles (dequantized panels) + tail rows
    (16, 96, 100, 32, False)])  # full tiles only, K not a multiple of the K unroll
def test_qlinear_int4_x86_matches_reference(M, K, N, G, sym):
    g = Graph("q4")
    x = g.add_input("x", "float32", [D.sym("b") if sym else 2, M, K])
    w = RNG.standard_normal((K, N)).astype(np.float32)
    p, s, z = quantize_weight_int4(w, G)
    ins = [x, g.add_constant(p, "w"), g.add_constant(s, "s"), g.add_constant(z, "z"),
           g.add_constant(RNG.standard_normal(N).astype(np.float32), "b")]
    g.set_outputs(g.add_node("qlinear_int4", ins, {"n": N, "k": K, "group_size": G}))
    r = x86.build(g)
    assert set(r.schedules.values()) == {"quant_int4"}, r.schedules
    for b in ([1, 2] if sym else [2]):
        xin = {"x": RNG.standard_normal((b, M, K)).astype(np.float32)}
        got = x86.run(r, xin, g.constants)[g.outputs[0]]
        want = run_reference(g, xin)[g.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    # and the reference is x @ dequantized W
    np.testing.assert_allclose(want, xin["x"] @ dequant_int4(p, s, z, G, N) + g.constants["b"],
                               rtol=1e-5, atol=1e-4)


def test_qlinear_int4_rejects_the_old_row_layout():
    g = Graph("q4")
    x = g.add_input("x", "float32", [1, 64])
    ins = [x, g.add_constant(np.zeros((32, 64), np.uint8), "w"),
           g.add_constant(np.ones((2, 64), np.float16), "s"),
           g.add_constant(np.zeros((2, 64), np.uint8), "z")]
    with pytest.raises(ShapeError, match=r"w must be uint8 \[1, 32, 64\]"):
        g.add_node("qlinear_int4", ins, {"n": 64, "k": 64, "group_size": 32})
