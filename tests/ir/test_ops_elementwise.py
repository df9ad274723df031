"""Elementwise ops: numpy references against onnx.reference (or torch where ONNX has none)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from ir_testutil import assert_same, rand, run_llmc, run_onnx

from llmc.errors import ShapeError
from llmc.ir import Graph

ANY = rand(3, 4, seed=1)
POS = rand(3, 4, seed=2, lo=0.1, hi=3.0)
UNIT = rand(3, 4, seed=3, lo=-0.95, hi=0.95)
GE1 = rand(3, 4, seed=4, lo=1.0, hi=4.0)
HALVES = np.array([[-2.5, -1.5, -0.5, 0.5], [1.5, 2.5, 3.5, -3.7], [0.0, 2.2, -0.2, 7.5]],
                  np.float32)

UNARY = [
    ("neg", "Neg", ANY), ("abs", "Abs", ANY), ("exp", "Exp", ANY), ("log", "Log", POS),
    ("sqrt", "Sqrt", POS), ("reciprocal", "Reciprocal", POS), ("tanh", "Tanh", ANY),
    ("sigmoid", "Sigmoid", rand(3, 4, seed=5, lo=-30, hi=30)), ("relu", "Relu", ANY),
    ("erf", "Erf", ANY), ("sin", "Sin", ANY), ("cos", "Cos", ANY), ("tan", "Tan", UNIT),
    ("asin", "Asin", UNIT), ("acos", "Acos", UNIT), ("atan", "Atan", ANY), ("sinh", "Sinh", ANY),
    ("cosh", "Cosh", ANY), ("asinh", "Asinh", ANY), ("acosh", "Acosh", GE1),
    ("atanh", "Atanh", UNIT), ("floor", "Floor", HALVES), ("ceil", "Ceil", HALVES),
    ("round", "Round", HALVES), ("sign", "Sign", HALVES), ("softplus", "Softplus", ANY),
    ("softsign", "Softsign", ANY), ("mish", "Mish", ANY), ("hard_swish", "HardSwish", ANY * 3),
    ("neg", "Neg", np.array([-3, 0, 7], np.int32)), ("abs", "Abs", np.array([-3, 0, 7], np.int64)),
    ("sign", "Sign", np.array([-3, 0, 7], np.int64)),
    ("relu", "Relu", np.array([-3, 0, 7], np.int32)),
    ("bitwise_not", "BitwiseNot", np.array([0, 5, -6], np.int32)),
    ("bitwise_not", "BitwiseNot", np.array([0, 5, 255], np.uint8)),
    ("logical_not", "Not", np.array([True, False])),
    ("exp", "Exp", ANY.astype(np.float64)), ("tanh", "Tanh", ANY.astype(np.float16)),
]


@pytest.mark.parametrize("op,onnx_op,x", UNARY, ids=[f"{u[0]}-{u[2].dtype}" for u in UNARY])
def test_unary_matches_onnx(op, onnx_op, x):
    (got,) = run_llmc(op, [x])
    (want,) = run_onnx(onnx_op, [x])
    tol = 1e-3 if x.dtype == np.float16 else 1e-5
    assert_same(got, want, rtol=tol, atol=tol)


def test_round_half_to_even():
    (got,) = run_llmc("round", [HALVES])
    np.testing.assert_array_equal(got[0], [-2.0, -2.0, -0.0, 0.0])
    np.testing.assert_array_equal(got[1][:3], [2.0, 2.0, 4.0])


@pytest.mark.parametrize("op,fn", [
    ("silu", torch.nn.functional.silu),
    ("rsqrt", torch.rsqrt),
    ("gelu", lambda t: torch.nn.functional.gelu(t)),
])
def test_unary_matches_torch(op, fn):
    x = POS if op == "rsqrt" else rand(5, 7, seed=9, lo=-6, hi=6)
    (got,) = run_llmc(op, [x])
    assert_same(got, fn(torch.from_numpy(x)).numpy(), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu_matches_onnx_and_torch(approx):
    x = rand(4, 9, seed=11, lo=-5, hi=5)
    (got,) = run_llmc("gelu", [x], {"approximate": approx})
    (want,) = run_onnx("Gelu", [x], {"approximate": approx})
    assert_same(got, want, rtol=2e-6, atol=2e-6)
    assert_same(got, torch.nn.functional.gelu(torch.from_numpy(x), approximate=approx).numpy(),
                rtol=2e-6, atol=2e-6)


def test_erf_is_float32_accurate():
    x = np.linspace(-5, 5, 2001, dtype=np.float32)
    (got,) = run_llmc("erf", [x])
    np.testing.assert_array_max_ulp(got, torch.erf(torch.from_numpy(x)).numpy(), maxulp=2)


ACTIVATIONS = [
    ("leaky_relu", "LeakyRelu", {"alpha": 0.1}),
    ("elu", "Elu", {"alpha": 0.7}),
    ("selu", "Selu", {"alpha": 1.5, "gamma": 1.1}),
    ("selu", "Selu", {}),
    ("celu", "Celu", {"alpha": 0.8}),
    ("thresholded_relu", "ThresholdedRelu", {"alpha": 0.5}),
    ("hard_sigmoid", "HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
    ("shrink", "Shrink", {"bias": 0.2, "lambd": 0.6}),
]


@pytest.mark.parametrize("op,onnx_op,attrs", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_attrs(op, onnx_op, attrs):
    x = rand(3, 5, seed=12, lo=-3, hi=3)
    (got,) = run_llmc(op, [x], attrs)
    (want,) = run_onnx(onnx_op, [x], attrs)
    assert_same(got, want)


@pytest.mark.parametrize("pos,neg", [(1, 1), (1, 0), (0, 1)])
def test_isinf_isnan(pos, neg):
    x = np.array([1.0, np.inf, -np.inf, np.nan, 0.0], np.float32)
    (got,) = run_llmc("isinf", [x], {"detect_positive": pos, "detect_negative": neg})
    (want,) = run_onnx("IsInf", [x], {"detect_positive": pos, "detect_negative": neg})
    assert_same(got, want)
    assert_same(run_llmc("isnan", [x])[0], run_onnx("IsNaN", [x])[0])


@pytest.mark.parametrize("x,lo,hi", [
    (rand(4, 4, seed=3), -0.5, 0.7), (rand(4, 4, seed=3), None, 0.2),
    (rand(4, 4, seed=3), -1.0, None), (np.arange(-5, 5, dtype=np.int64), -2, 3),
    (np.array([np.nan, 5.0], np.float32), 0.0, 1.0),
])
def test_clip(x, lo, hi):
    (got,) = run_llmc("clip", [x], {"min": lo, "max": hi})
    bounds = [None if v is None else np.array(v, x.dtype) for v in (lo, hi)]
    (want,) = run_onnx("Clip", [x] + bounds)
    assert_same(got, want)


CASTS = [
    (np.array([-2.7, -1.5, -0.2, 0.0, 0.9, 3.99], np.float32), np.int32),
    (np.array([-2.7, -1.5, 0.0, 0.9, 300.0], np.float64), np.int64),
    (np.array([-2.0, 0.0, 0.1, np.nan], np.float32), np.bool_),
    (np.array([0, 3, -1], np.int64), np.bool_),
    (np.array([True, False]), np.float32),
    (np.array([1.0001, 65504.0, 1e-8], np.float32), np.float16),
    (np.array([-5, 7], np.int32), np.float32),
    (np.array([1 << 40, -3], np.int64), np.int32),
]


@pytest.mark.parametrize("x,to", CASTS, ids=[f"{c[0].dtype}-{np.dtype(c[1])}" for c in CASTS])
def test_cast(x, to):
    from llmc.dtypes import from_numpy
    (got,) = run_llmc("cast", [x], {"to": from_numpy(to)})
    (want,) = run_onnx("Cast", [x], {"to": helper.np_dtype_to_tensor_dtype(np.dtype(to))})
    assert_same(got, want)


def test_cast_to_bfloat16_rounds_to_nearest_even():
    import ml_dtypes
    x = np.array([1.0, 1.00390625, 1.01171875, -3.3], np.float32)
    (got,) = run_llmc("cast", [x], {"to": "bfloat16"})
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(got.astype(np.float32), want)


A = rand(2, 3, 4, seed=21)
B = rand(3, 1, seed=22, lo=0.5, hi=2)
IA = np.array([[-7, 7, -6, 6, 0, 5]], np.int64)
IB = np.array([[2], [-2], [3]], np.int64)

BINARY = [
    ("add", "Add", A, B), ("sub", "Sub", A, B), ("mul", "Mul", A, B), ("div", "Div", A, B),
    ("maximum", "Max", A, B), ("minimum", "Min", A, B), ("pow", "Pow", B, A),
    ("add", "Add", IA, IB), ("sub", "Sub", IA, IB), ("mul", "Mul", IA, IB),
    ("div", "Div", IA, IB), ("div", "Div", IA.astype(np.int32), IB.astype(np.int32)),
    ("pow", "Pow", IB, np.array([0, 1, 3], np.int64)),
    ("pow", "Pow", B, np.array([2], np.int64)),
    ("equal", "Equal", IA, IB), ("less", "Less", A, B), ("less_equal", "LessOrEqual", IA, IB),
    ("greater", "Greater", A, B), ("greater_equal", "GreaterOrEqual", IA, IB),
    ("bitwise_and", "BitwiseAnd", IA, IB), ("bitwise_or", "BitwiseOr", IA, IB),
    ("bitwise_xor", "BitwiseXor", IA, IB),
    ("prelu", "PRelu", A, rand(4, seed=23)),
]


@pytest.mark.parametrize("op,onnx_op,a,b", BINARY,
                         ids=[f"{b[0]}-{b[2].dtype}-{b[3].dtype}" for b in BINARY])
def test_binary_matches_onnx(op, onnx_op, a, b):
    (got,) = run_llmc(op, [a, b])
    (want,) = run_onnx(onnx_op, [a, b])
    assert_same(got, want)


def test_int_div_truncates_toward_zero():
    a, b = np.array([-7, 7, -7, 7], np.int32), np.array([2, 2, -2, -2], np.int32)
    (got,) = run_llmc("div", [a, b])
    np.testing.assert_array_equal(got, [-3, 3, 3, -3])


@pytest.mark.parametrize("fmod,a,b", [
    (0, IA, IB), (1, IA, IB), (1, A, B), (1, A, -B),
    (0, np.array([-7, 7, -7, 7], np.int32), np.array([3, 3, -3, -3], np.int32)),
])
def test_mod(fmod, a, b):
    (got,) = run_llmc("mod", [a, b], {"fmod": fmod})
    (want,) = run_onnx("Mod", [a, b], {"fmod": fmod})
    assert_same(got, want)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # onnx.reference's inf % x
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mod_float_python_sign(dtype):
    """fmod=0 on floats: sign of the divisor, as Python (ONNX opset 28 defines it)."""
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.0, 3.0, -1.0, np.inf], dtype)
    b = np.array([2.0, 2.0, -2.0, -2.0, 3.0, np.inf, np.inf, 2.0], dtype)
    (got,) = run_llmc("mod", [a, b], {"fmod": 0})
    assert_same(got, run_onnx("Mod", [a, b], {"fmod": 0}, opset=28)[0])
    np.testing.assert_array_equal(got[:4], [1.5, 0.5, -0.5, -1.5])


@pytest.mark.parametrize("op,onnx_op", [("logical_and", "And"), ("logical_or", "Or"),
                                        ("logical_xor", "Xor")])
def test_logical(op, onnx_op):
    a = np.array([[True, False, True, False]])
    b = np.array([[True], [False]])
    assert_same(run_llmc(op, [a, b])[0], run_onnx(onnx_op, [a, b])[0])


@pytest.mark.parametrize("direction", ["left", "right"])
def test_bit_shift(direction):
    a = np.array([1, 16, 255, 7], np.uint32)
    b = np.array([1, 2, 3, 0], np.uint32)
    (got,) = run_llmc("bit_shift", [a, b], {"direction": direction})
    (want,) = run_onnx("BitShift", [a, b], {"direction": direction.upper()})
    assert_same(got, want)


def test_where():
    c = np.array([[True], [False], [True]])
    x, y = rand(3, 4, seed=30), rand(4, seed=31)
    (got,) = run_llmc("where", [c, x, y])
    assert_same(got, run_onnx("Where", [c, x, y])[0])


# --------------------------------------------------------------------------- errors
def _graph(*types):
    g = Graph("t")
    return g, [g.add_input(f"v{i}", dt, sh) for i, (dt, sh) in enumerate(types)]


def test_where_needs_bool_condition():
    g, (c, x, y) = _graph(("float32", [3]), ("float32", [3]), ("float32", [3]))
    msg = r"node 'where' \(where\): condition must be bool, got float32"
    with pytest.raises(ShapeError, match=msg):
        g.add_node("where", [c, x, y])


def test_binary_dtype_mismatch():
    g, (a, b) = _graph(("float32", [3]), ("int64", [3]))
    with pytest.raises(ShapeError, match=r"operand dtypes differ \(float32 vs int64\)"):
        g.add_node("add", [a, b])


def test_binary_bad_broadcast():
    g, (a, b) = _graph(("float32", [3, 4]), ("float32", [5]))
    with pytest.raises(ShapeError, match=r"\[3, 4\] and \[5\] do not broadcast"):
        g.add_node("mul", [a, b])


@pytest.mark.parametrize("op,dtype,msg", [
    ("exp", "int64", "float dtype"), ("logical_not", "float32", "bool dtype"),
    ("bitwise_not", "float32", "integer dtype"), ("isnan", "int32", "float dtype"),
])
def test_unary_dtype_checks(op, dtype, msg):
    g, (x,) = _graph((dtype, [2]))
    with pytest.raises(ShapeError, match=msg):
        g.add_node(op, [x])


def test_cast_unknown_dtype():
    g, (x,) = _graph(("float32", [2]))
    with pytest.raises(ShapeError, match="cast 'to' must be one of"):
        g.add_node("cast", [x], {"to": "float8"})
