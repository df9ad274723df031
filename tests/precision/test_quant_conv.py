"""int8 conv (qconv2d_int8): exact integer reference, x86 kernel, and the CNN under int8."""
from __future__ import annotations

import numpy as np
import pytest

from llmc.backends import x86
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.ops.quant import pack_int8, quantize_activation
from llmc.passes.quantize import quantize_weight_int8

RNG = np.random.default_rng(0)
GEOMS = [  # (N, Cin, H, W, Cout, kernel, stride, pad, dilation)
    (2, 3, 9, 11, 10, 3, 1, 1, 1),     # K = 27 (not a multiple of 4), Cout not of 16
    (1, 16, 12, 12, 32, 3, 2, 1, 1),
    (2, 8, 7, 7, 16, 1, 1, 0, 1),
    (1, 4, 10, 10, 20, 3, 1, 2, 2),
]


def _graph(nb, ci, h, w, co, ks, st, pad, dil, bias=True):
    wf = RNG.standard_normal((co, ci, ks, ks)).astype(np.float32)
    wq, ws = quantize_weight_int8(wf.transpose(0, 2, 3, 1).reshape(co, -1).T)  # (kh, kw, c)
    g = Graph("qc")
    x = g.add_input("x", "float32", [nb, ci, h, w])
    ins = [x, g.add_constant(pack_int8(wq), "w"), g.add_constant(ws, "s"),
           g.add_constant(wq.astype(np.int32).sum(1).astype(np.int32), "cs")]
    if bias:
        ins.append(g.add_constant(RNG.standard_normal(co).astype(np.float32), "b"))
    attrs = {"n": co, "k": ci * ks * ks, "kernel": [ks, ks], "strides": [st, st],
             "pads": [pad] * 4, "dilations": [dil, dil], "x_scale": 0.03}
    g.set_outputs(g.add_node("qconv2d_int8", ins, attrs))
    return g, wq.reshape(co, ks, ks, ci).transpose(0, 3, 1, 2), ws


def _int_conv(xq, wq, st, pad, dil):
    """Direct int64 convolution by loops over the kernel taps (independent of im2col)."""
    nb, ci, h, w = xq.shape
    co, _, kh, kw = wq.shape
    xp = np.pad(xq.astype(np.int64), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh = (h + 2 * pad - dil * (kh - 1) - 1) // st + 1
    ow = (w + 2 * pad - dil * (kw - 1) - 1) // st + 1
    acc = np.zeros((nb, co, oh, ow), np.int64)
    for u in range(kh):
        for v in range(kw):
            patch = xp[:, :, u * dil: u * dil + st * (oh - 1) + 1: st,
                       v * dil: v * dil + st * (ow - 1) + 1: st]
            acc += np.einsum("nchw,oc->nohw", patch, wq[:, :, u, v].astype(np.int64))
    return acc


@pytest.mark.parametrize("geom", GEOMS)
def test_reference_is_the_integer_conv(geom):
    nb, ci, h, w, co, ks, st, pad, dil = geom
    g, wq, ws = _graph(*geom)
    x = RNG.standard_normal((nb, ci, h, w)).astype(np.float32) * 2
    got = run_reference(g, {"x": x})[g.outputs[0]]
    acc = _int_conv(quantize_activation(x, 0.03), wq, st, pad, dil)
    want = acc.astype(np.float32) * (np.float32(0.03) * ws)[None, :, None, None] + \
        g.constants["b"][None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("geom", GEOMS[:2] + GEOMS[3:])
def test_x86_kernel_matches_reference(geom):
    g, _, _ = _graph(*geom, bias=geom[0] == 2)
    x = RNG.standard_normal(geom[:4]).astype(np.float32)
    r = x86.build(g)
    assert set(r.schedules.values()) == {"quant_int8"}, r.schedules
    got = x86.run(r, {"x": x}, g.constants)[g.outputs[0]]
    want = run_reference(g, {"x": x})[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_cnn_int8_within_stated_error():
    """The ResNet-style CNN: every conv and the classifier run int8; logits vs fp32 cosine
    >= 0.99 and top-1 agreement >= 0.9 on fresh inputs (stated error), compiled == reference."""

    from llmc.accuracy import accuracy_report
    from llmc.frontend import import_model
    from llmc.passes import run_passes
    from llmc.passes.precision import apply_precision
    from tests.models import resnet_cnn, resnet_input
    g = import_model(resnet_cnn(), (resnet_input(batch=8),))
    g, _ = run_passes(g, passes=["fold_batchnorm", "constant_fold", "simplify", "constant_fold",
                                 "cse", "dce"])
    calib = [{g.inputs[0]: resnet_input(batch=8, seed=s).numpy()} for s in (1, 2)]
    q, info = apply_precision(g, "int8", calib, calibrator="percentile")
    assert sum(n.op == "qconv2d_int8" for n in q.nodes) == 9  # 7 3x3 + 2 1x1 shortcuts
    assert not any(n.op == "conv" for n in q.nodes)
    test = [{g.inputs[0]: resnet_input(batch=8, seed=s).numpy()} for s in (7, 8)]
    rep = accuracy_report(g, q, test, "int8", classifier=True, info=info)
    (m,) = rep.outputs.values()
    assert m["cosine"] >= 0.99 and m["top1_agreement"] >= 0.9, rep.format()
    assert rep.size_bytes < rep.size_fp32_bytes / 3
    qf, _ = run_passes(q, passes=["fuse"])
    r = x86.build(qf)
    got = x86.run(r, test[0], qf.constants)[qf.outputs[0]]
    want = run_reference(q, test[0])[q.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_pipeline_quantizes_convs_before_the_layout_pass():
    """-O3 with --precision int8: the conv becomes qconv2d_int8 (the blocked-layout pass runs
    after precision lowering, on what stays float)."""
    from llmc.pipeline import CompileOptions, _optimize
    g = Graph("c")
    x = g.add_input("x", "float32", [1, 8, 10, 10])
    w = g.add_constant(RNG.standard_normal((16, 8, 3, 3)).astype(np.float32), "w")
    b = g.add_constant(RNG.standard_normal(16).astype(np.float32), "b")
    y, = g.add_node("conv", [x, w, b], {"pads": [1, 1, 1, 1]})
    g.set_outputs(g.add_node("relu", [y]))
    calib = [{"x": RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)}]
    q, _, info = _optimize(g, CompileOptions(precision="int8", calib=calib))
    assert [n.op for n in q.nodes] == ["qconv2d_int8", "relu"]
    assert info["layers"][0]["precision"] == "int8"
    got = run_reference(q, calib[0])[q.outputs[0]]
    want = run_reference(g, calib[0])[g.outputs[0]]
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999
