"""Linear algebra and NN ops against onnx.reference and torch; symbolic shape inference."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ir_testutil import assert_same, rand, run_llmc, run_onnx

from llmc import dims as D
from llmc.errors import ShapeError
from llmc.ir import Graph

B, S, H = D.sym("batch"), D.sym("seq"), D.sym("height")


@pytest.mark.parametrize("sa,sb", [
    ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 5)),
    ((2, 3, 4), (4,)), ((4,), (4,)),
])
def test_matmul(sa, sb):
    a, b = rand(*sa, seed=1), rand(*sb, seed=2)
    (got,) = run_llmc("matmul", [a, b])
    assert_same(got, run_onnx("MatMul", [a, b])[0])


def test_matmul_int():
    a = np.arange(12, dtype=np.int64).reshape(3, 4) - 5
    b = np.arange(8, dtype=np.int64).reshape(4, 2)
    assert_same(run_llmc("matmul", [a, b])[0], run_onnx("MatMul", [a, b])[0])


CONVS = [
    ((1, 3, 7, 7), (4, 3, 3, 3), {}, True),
    ((2, 4, 9, 8), (6, 2, 3, 2), {"strides": [2, 1], "pads": [1, 0, 1, 1], "group": 2}, True),
    ((1, 2, 10, 10), (3, 2, 3, 3), {"dilations": [2, 3], "pads": [2, 1, 0, 3]}, False),
    ((1, 4, 6, 6), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, True),   # depthwise
    ((2, 3, 11), (5, 3, 4), {"strides": [3], "pads": [2, 1]}, True),          # 1-D
    ((1, 2, 5, 4, 6), (3, 2, 2, 3, 2), {"strides": [1, 2, 1], "pads": [0, 1, 0, 1, 0, 1]}, False),
]


@pytest.mark.parametrize("xs,ws,attrs,bias", CONVS)
def test_conv(xs, ws, attrs, bias):
    x, w = rand(*xs, seed=3), rand(*ws, seed=4)
    b = rand(ws[0], seed=5) if bias else None
    full = {"strides": [1] * (len(xs) - 2), "pads": [0] * (2 * len(xs) - 4),
            "dilations": [1] * (len(xs) - 2), "group": 1} | attrs
    (got,) = run_llmc("conv", [x, w] + ([b] if bias else []), full)
    (want,) = run_onnx("Conv", [x, w] + ([b] if bias else []), attrs)
    assert_same(got, want, rtol=1e-5, atol=1e-5)


CONV_T = [
    ((1, 3, 4, 4), (3, 2, 3, 3), {}, True),
    ((1, 2, 3, 5), (2, 3, 3, 2), {"strides": [2, 3], "pads": [1, 0, 0, 1],
                                  "output_padding": [1, 2]}, False),
    ((2, 4, 3, 3), (4, 1, 2, 2), {"group": 2, "dilations": [2, 1], "strides": [2, 2]}, True),
    ((1, 2, 5), (2, 3, 4), {"strides": [2], "pads": [1, 2]}, True),
]


@pytest.mark.parametrize("xs,ws,attrs,bias", CONV_T)
def test_conv_transpose(xs, ws, attrs, bias):
    x, w = rand(*xs, seed=6), rand(*ws, seed=7)
    b = rand(ws[1] * attrs.get("group", 1), seed=8) if bias else None
    (got,) = run_llmc("conv_transpose", [x, w] + ([b] if bias else []), attrs)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    bt = torch.from_numpy(b) if bias else None
    nd = len(xs) - 2
    pads = attrs.get("pads", [0] * 2 * nd)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d}[nd]
    # torch pads symmetrically: run unpadded, then crop begin/end pads explicitly
    want = fn(xt, wt, bt, stride=attrs.get("strides", 1), padding=0,
              output_padding=attrs.get("output_padding", 0), groups=attrs.get("group", 1),
              dilation=attrs.get("dilations", 1)).numpy()
    want = want[(slice(None), slice(None)) + tuple(
        slice(pads[i], want.shape[2 + i] - pads[nd + i]) for i in range(nd))]
    assert_same(got, want, rtol=1e-5, atol=1e-5)
    # onnx.reference's ConvTranspose cannot do group > 1; onnxruntime can
    engine = "ort" if attrs.get("group", 1) > 1 else "reference"
    (onnx_want,) = run_onnx("ConvTranspose", [x, w] + ([b] if bias else []), attrs, engine=engine)
    assert_same(got, onnx_want, rtol=1e-5, atol=1e-5)


POOLS = [
    ((1, 2, 7, 7), {"kernel": [3, 3], "strides": [2, 2]}),
    ((1, 2, 7, 8), {"kernel": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]}),
    ((2, 1, 8, 8), {"kernel": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ((1, 2, 9, 9), {"kernel": [2, 2], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((1, 2, 11), {"kernel": [4], "strides": [3], "pads": [2, 1]}),
]


@pytest.mark.parametrize("xs,attrs", POOLS)
def test_max_pool(xs, attrs):
    x = rand(*xs, seed=9)
    onnx_attrs = {("kernel_shape" if k == "kernel" else k): v for k, v in attrs.items()}
    (got,) = run_llmc("max_pool", [x], attrs)
    assert_same(got, run_onnx("MaxPool", [x], onnx_attrs)[0])


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_max_pool_int(dtype):
    x = np.random.default_rng(5).integers(0, 200, size=(1, 2, 6, 6)).astype(dtype)
    attrs = {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    (got,) = run_llmc("max_pool", [x], attrs)
    onnx_attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    assert_same(got, run_onnx("MaxPool", [x], onnx_attrs)[0])


def test_max_pool_dilations():
    x = rand(1, 2, 9, 9, seed=10)
    attrs = {"kernel": [2, 2], "strides": [1, 1], "dilations": [2, 3], "pads": [1, 1, 0, 0]}
    (got,) = run_llmc("max_pool", [x], attrs)
    want = F.max_pool2d(F.pad(torch.from_numpy(x), (1, 0, 1, 0), value=-np.inf), (2, 2),
                        stride=1, dilation=(2, 3)).numpy()
    assert_same(got, want)


@pytest.mark.parametrize("xs,attrs", POOLS)
@pytest.mark.parametrize("include", [0, 1])
def test_avg_pool(xs, attrs, include):
    x = rand(*xs, seed=11)
    attrs = attrs | {"count_include_pad": include}
    onnx_attrs = {("kernel_shape" if k == "kernel" else k): v for k, v in attrs.items()}
    (got,) = run_llmc("avg_pool", [x], attrs)
    # onnx.reference's AveragePool mis-divides partial ceil-mode windows; onnxruntime is right
    engine = "ort" if attrs.get("ceil_mode") else "reference"
    assert_same(got, run_onnx("AveragePool", [x], onnx_attrs, engine=engine)[0])


@pytest.mark.parametrize("op,onnx_op", [("global_avg_pool", "GlobalAveragePool"),
                                        ("global_max_pool", "GlobalMaxPool")])
def test_global_pool(op, onnx_op):
    x = rand(2, 3, 4, 5, seed=12)
    assert_same(run_llmc(op, [x])[0], run_onnx(onnx_op, [x])[0])


def test_batch_norm():
    x = rand(2, 3, 4, 5, seed=13)
    sc, bi, mu = rand(3, seed=14), rand(3, seed=15), rand(3, seed=16)
    var = rand(3, seed=17, lo=0.5, hi=2.0)
    (got,) = run_llmc("batch_norm", [x, sc, bi, mu, var], {"epsilon": 1e-3})
    (want,) = run_onnx("BatchNormalization", [x, sc, bi, mu, var], {"epsilon": 1e-3})
    assert_same(got, want, rtol=1e-5, atol=1e-5)


def test_instance_norm():
    x = rand(2, 3, 4, 5, seed=18)
    sc, bi = rand(3, seed=19), rand(3, seed=20)
    (got,) = run_llmc("instance_norm", [x, sc, bi], {"epsilon": 1e-4})
    (want,) = run_onnx("InstanceNormalization", [x, sc, bi], {"epsilon": 1e-4})
    assert_same(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis,bias", [(2, True), (1, True), (2, False)])
def test_layer_norm(axis, bias):
    x = rand(2, 3, 8, seed=21)
    sc = rand(*x.shape[axis:], seed=22)
    b = rand(*x.shape[axis:], seed=23) if bias else None
    attrs = {"axis": axis, "epsilon": 1e-5}
    (got,) = run_llmc("layer_norm", [x, sc, b], attrs)
    (want,) = run_onnx("LayerNormalization", [x, sc] + ([b] if bias else []), attrs)
    assert_same(got, want, rtol=1e-5, atol=1e-5)


def test_layer_norm_matches_torch():
    x, w, b = rand(4, 384, seed=24), rand(384, seed=25), rand(384, seed=26)
    (got,) = run_llmc("layer_norm", [x, w, b], {"axis": 1, "epsilon": 1e-12})
    want = F.layer_norm(*map(torch.from_numpy, (x,)), (384,), torch.from_numpy(w),
                        torch.from_numpy(b), eps=1e-12).numpy()
    assert_same(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", [1, 2])
def test_rms_norm(axis):
    x = rand(2, 3, 8, seed=27)
    sc = rand(*x.shape[axis:], seed=28)
    (got,) = run_llmc("rms_norm", [x, sc], {"axis": axis, "epsilon": 1e-6})
    x64 = x.astype(np.float64)
    axes = tuple(range(axis, 3))
    want = x64 / np.sqrt((x64 ** 2).mean(axis=axes, keepdims=True) + 1e-6) * sc
    assert_same(got, want.astype(np.float32), rtol=1e-5, atol=1e-6)
    (onnx_want,) = run_onnx("RMSNormalization", [x, sc], {"axis": axis, "epsilon": 1e-6},
                            opset=23)
    assert_same(got, onnx_want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,onnx_op", [("softmax", "Softmax"), ("log_softmax", "LogSoftmax"),
                                        ("hardmax", "Hardmax")])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_softmax_family(op, onnx_op, axis):
    x = rand(2, 3, 4, seed=29, lo=-50, hi=50)
    x[0, 0, :2] = x[0, 0, 2]   # a tie for hardmax
    (got,) = run_llmc(op, [x], {"axis": axis})
    assert_same(got, run_onnx(onnx_op, [x], {"axis": axis})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [3, 4, 5])
def test_lrn(size):
    x = rand(2, 6, 3, 3, seed=30)
    attrs = {"size": size, "alpha": 2e-3, "beta": 0.7, "bias": 1.5}
    (got,) = run_llmc("lrn", [x], attrs)
    # the ONNX spec's formula, literally (onnx.reference's LRN is off by ~1e-3 here)
    x64 = x.astype(np.float64)
    want = np.empty_like(x64)
    for c in range(6):
        lo, hi = max(0, c - (size - 1) // 2), min(5, c + (size - 1) - (size - 1) // 2)
        sq = (x64[:, lo:hi + 1] ** 2).sum(axis=1)
        want[:, c] = x64[:, c] / (1.5 + 2e-3 / size * sq) ** 0.7
    assert_same(got, want.astype(np.float32), rtol=1e-6, atol=1e-6)
    if size % 2:   # onnxruntime supports odd sizes only
        assert_same(got, run_onnx("LRN", [x], attrs, engine="ort")[0], rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- attention
def _sdpa(q, k, v, mask=None, is_causal=False, scale=None, gqa=False):
    t = [torch.from_numpy(a) for a in (q, k, v)]
    m = torch.from_numpy(mask) if isinstance(mask, np.ndarray) else mask
    return F.scaled_dot_product_attention(*t, attn_mask=m, is_causal=is_causal, scale=scale,
                                          enable_gqa=gqa).numpy()


@pytest.mark.parametrize("hq,hk", [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_gqa_matches_torch(hq, hk, is_causal):
    q, k, v = rand(2, hq, 5, 8, seed=31), rand(2, hk, 5, 8, seed=32), rand(2, hk, 5, 6, seed=33)
    (got,) = run_llmc("attention", [q, k, v], {"scale": None, "is_causal": is_causal})
    assert_same(got, _sdpa(q, k, v, is_causal=is_causal, gqa=hq != hk), rtol=1e-5, atol=1e-5)
    (want,) = run_onnx("Attention", [q, k, v], {"is_causal": int(is_causal)}, opset=23)
    assert_same(got, want, rtol=1e-5, atol=1e-5)


def test_attention_masks_and_scale():
    q, k, v = rand(1, 2, 3, 4, seed=34), rand(1, 2, 5, 4, seed=35), rand(1, 2, 5, 4, seed=36)
    bool_mask = np.random.default_rng(0).random((1, 1, 3, 5)) > 0.3
    bool_mask[..., 0] = True
    (got,) = run_llmc("attention", [q, k, v, bool_mask], {"scale": 0.3, "is_causal": False})
    assert_same(got, _sdpa(q, k, v, bool_mask, scale=0.3), rtol=1e-5, atol=1e-5)
    add_mask = rand(3, 5, seed=37)
    (got,) = run_llmc("attention", [q, k, v, add_mask], {"scale": None, "is_causal": False})
    assert_same(got, _sdpa(q, k, v, add_mask), rtol=1e-5, atol=1e-5)


def test_attention_fully_masked_row_is_zero():
    q, k, v = rand(1, 2, 2, 8, seed=45), rand(1, 2, 3, 8, seed=46), rand(1, 2, 3, 8, seed=47)
    mask = np.array([[False, False, False], [True, False, True]])
    (got,) = run_llmc("attention", [q, k, v, mask], {})
    assert np.all(got[..., 0, :] == 0)
    assert_same(got, _sdpa(q, k, v, mask), rtol=1e-5, atol=1e-5)
    (want,) = run_onnx("Attention", [q, k, v, mask], {}, opset=23)
    assert_same(got, want, rtol=1e-5, atol=1e-5)


def test_attention_causal_is_bottom_right_aligned():
    from torch.nn.attention.bias import causal_lower_right
    q, k, v = rand(1, 2, 3, 4, seed=38), rand(1, 2, 7, 4, seed=39), rand(1, 2, 7, 4, seed=40)
    (got,) = run_llmc("attention", [q, k, v], {"is_causal": True})
    assert_same(got, _sdpa(q, k, v, causal_lower_right(3, 7)), rtol=1e-5, atol=1e-5)


def test_attention_3d():
    q, k, v = rand(3, 5, 8, seed=41), rand(3, 6, 8, seed=42), rand(3, 6, 2, seed=43)
    (got,) = run_llmc("attention", [q, k, v], {})
    assert_same(got, _sdpa(q, k, v), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- half precision
HALF_CASES = [
    ("matmul", [(3, 8), (8, 4)], {}),
    ("softmax", [(2, 7)], {"axis": 1}),
    ("layer_norm", [(2, 8), (8,), (8,)], {"axis": 1, "epsilon": 1e-5}),
    ("gelu", [(3, 5)], {"approximate": "none"}),
    ("conv", [(1, 2, 5, 5), (3, 2, 3, 3)], {"pads": [1, 1, 1, 1]}),
    ("attention", [(1, 2, 3, 4), (1, 1, 3, 4), (1, 1, 3, 4)], {"is_causal": True}),
    ("reduce_mean", [(4, 6)], {"axes": [1], "keepdims": 0}),
    ("add", [(4, 6), (6,)], {}),
    ("rms_norm", [(2, 8), (8,)], {"axis": 1, "epsilon": 1e-6}),
]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op,shapes,attrs", HALF_CASES, ids=[c[0] for c in HALF_CASES])
def test_half_precision_keeps_dtype(op, shapes, attrs, dtype):
    """Half inputs give half outputs, equal to the float32 result rounded once."""
    from llmc.dtypes import to_numpy
    half = [rand(*s, seed=50 + i).astype(to_numpy(dtype)) for i, s in enumerate(shapes)]
    (got,) = run_llmc(op, half, attrs)
    assert got.dtype == to_numpy(dtype)
    (ref32,) = run_llmc(op, [h.astype(np.float32) for h in half], attrs)
    tol = 1e-2 if dtype == "bfloat16" else 2e-3
    np.testing.assert_allclose(got.astype(np.float32), ref32.astype(to_numpy(dtype)).astype(
        np.float32), rtol=tol, atol=tol)


# --------------------------------------------------------------------------- symbolic shapes
def _infer(op, types, attrs=None):
    g = Graph("t")
    names = [g.add_input(f"v{i}", dt, sh) if sh is not None else ""
             for i, (dt, sh) in enumerate(types)]
    return [g.types[o] for o in g.add_node(op, names, attrs or {})]


def test_symbolic_matmul():
    (t,) = _infer("matmul", [("float32", [B, S, 384]), ("float32", [384, 1536])])
    assert t.shape == (B, S, 1536)
    (t,) = _infer("matmul", [("float32", [B, 12, S, 32]), ("float32", [B, 12, 32, S])])
    assert t.shape == (B, 12, S, S)
    (t,) = _infer("matmul", [("float32", [1, 12, S, 32]), ("float32", [B, 1, 32, 7])])
    assert t.shape == (B, 12, S, 7)


def test_symbolic_conv_and_pool():
    (t,) = _infer("conv", [("float32", [B, 3, H, 224]), ("float32", [64, 3, 7, 7])],
                  {"strides": [2, 2], "pads": [3, 3, 3, 3]})
    assert t.shape[:2] == (B, 64) and t.shape[3] == 112
    for h in (224, 225, 17):
        assert D.evaluate(t.shape[2], {"height": h}) == (h + 6 - 7) // 2 + 1
    (p,) = _infer("max_pool", [("float32", [B, 64, H, 112])],
                  {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]})
    assert p.shape[3] == 56
    assert D.evaluate(p.shape[2], {"height": 112}) == 56
    (g,) = _infer("global_avg_pool", [("float32", [B, 64, H, 7])])
    assert g.shape == (B, 64, 1, 1)
    (ct,) = _infer("conv_transpose", [("float32", [B, 4, H, 5]), ("float32", [4, 2, 3, 3])],
                   {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]})
    assert ct.shape[:2] == (B, 2) and ct.shape[3] == 10 and D.equal(ct.shape[2], 2 * H)


@pytest.mark.parametrize("k,s,pb,pe", [(3, 2, 1, 1), (2, 3, 1, 1), (2, 2, 0, 1), (3, 3, 2, 0)])
def test_symbolic_ceil_mode_pool_matches_static(k, s, pb, pe):
    attrs = {"kernel": [k], "strides": [s], "pads": [pb, pe], "ceil_mode": 1}
    (sym,) = _infer("max_pool", [("float32", [1, 1, H])], attrs)
    for h in range(max(1, k - pb - pe), 12):
        (static,) = _infer("max_pool", [("float32", [1, 1, h])], attrs)
        assert D.evaluate(sym.shape[2], {"height": h}) == static.shape[2]
        (y,) = run_llmc("max_pool", [rand(1, 1, h, seed=h)], attrs)
        assert y.shape == static.shape


def test_symbolic_attention_and_norms():
    (t,) = _infer("attention", [("float32", [B, 8, S, 64]), ("float32", [B, 2, S + 3, 64]),
                                ("float32", [B, 2, S + 3, 64]), ("bool", [B, 1, S, S + 3])],
                  {"is_causal": False})
    assert t.shape == (B, 8, S, 64)
    (t,) = _infer("layer_norm", [("float32", [B, S, 384]), ("float32", [384]), ("float32", [384])],
                  {"axis": 2, "epsilon": 1e-12})
    assert t.shape == (B, S, 384)
    (t,) = _infer("softmax", [("float32", [B, 12, S, S])], {"axis": 3})
    assert t.shape == (B, 12, S, S)


def test_symbolic_graph_runs():
    """Shape inference with symbols and the reference agree on concrete sizes."""
    from llmc.interpreter import run_reference
    g = Graph("t")
    x = g.add_input("x", "float32", [B, 3, H, 10])
    w = g.add_constant(rand(4, 3, 3, 3, seed=44), "w")
    (y,) = g.add_node("conv", [x, w], {"strides": [2, 2], "pads": [1, 1, 1, 1]})
    (z,) = g.add_node("max_pool", [y], {"kernel": [2, 2], "strides": [2, 2], "ceil_mode": 1})
    g.set_outputs([z])
    g.verify()
    for h in (9, 16):
        out = run_reference(g, {"x": rand(2, 3, h, 10, seed=h)})[z]
        want = tuple(D.evaluate(d, {"batch": 2, "height": h}) for d in g.types[z].shape)
        assert out.shape == want


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("op,types,attrs,msg", [
    ("matmul", [("float32", [2, 3]), ("float32", [4, 5])], {},
     r"inner dims differ: \[2, 3\] @ \[4, 5\] \(3 vs 4\)"),
    ("matmul", [("float32", [B, S, 384]), ("float32", [383, 5])], {}, "inner dims differ"),
    ("matmul", [("float32", [2, 3]), ("float16", [3, 5])], {}, "dtypes differ"),
    ("matmul", [("float32", [3, 2, 3]), ("float32", [4, 3, 5])], {}, "matmul batch dims"),
    ("conv", [("float32", [1, 3, 8, 8]), ("float32", [4, 2, 3, 3])], {},
     "x has 3 channels but w"),
    ("conv", [("float32", [1, 3, 2, 2]), ("float32", [4, 3, 3, 3])], {}, "larger than the padded"),
    ("conv", [("int64", [1, 3, 8, 8]), ("int64", [4, 3, 3, 3])], {}, "float dtype"),
    ("max_pool", [("float32", [1, 3, 8, 8])], {"kernel": [3]}, "kernel needs 2 entries"),
    ("softmax", [("float32", [2, 3])], {"axis": 2}, "axis 2 out of range"),
    ("layer_norm", [("float32", [2, 8]), ("float32", [7])], {"axis": 1}, "do not broadcast"),
    ("batch_norm", [("float32", [2, 3, 4])] + [("float32", [4])] * 4, {}, r"must be \[3\]"),
    ("attention", [("float32", [1, 6, 3, 8]), ("float32", [1, 4, 3, 8]),
                   ("float32", [1, 4, 3, 8])], {}, "q heads 6 not a multiple of kv heads 4"),
    ("attention", [("float32", [1, 2, 3, 8]), ("float32", [1, 2, 3, 4]),
                   ("float32", [1, 2, 3, 8])], {}, "embedding dims differ"),
    ("attention", [("float32", [1, 2, 3, 8])] * 3 + [("int64", [3, 3])], {}, "mask must be bool"),
])
def test_nn_errors(op, types, attrs, msg):
    with pytest.raises(ShapeError, match=msg):
        _infer(op, types, attrs)
