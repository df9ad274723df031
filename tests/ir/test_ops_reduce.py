"""Reductions, argmax/argmin and cumsum against onnx.reference."""
from __future__ import annotations

import numpy as np
import pytest

from ir_testutil import assert_same, i64, rand, run_llmc, run_onnx

from llmc import dims as D
from llmc.errors import ShapeError
from llmc.ir import Graph

X = rand(2, 3, 4, seed=1, lo=0.2, hi=2.0)
REDUCE = [("reduce_sum", "ReduceSum"), ("reduce_mean", "ReduceMean"), ("reduce_max", "ReduceMax"),
          ("reduce_min", "ReduceMin"), ("reduce_prod", "ReduceProd"), ("reduce_l1", "ReduceL1"),
          ("reduce_l2", "ReduceL2"), ("reduce_sum_square", "ReduceSumSquare"),
          ("reduce_log_sum", "ReduceLogSum"), ("reduce_log_sum_exp", "ReduceLogSumExp")]


@pytest.mark.parametrize("op,onnx_op", REDUCE, ids=[r[0] for r in REDUCE])
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, 2], 0), ([], 1), ([], 0)])
def test_reduce(op, onnx_op, axes, keepdims):
    (got,) = run_llmc(op, [X], {"axes": axes, "keepdims": keepdims})
    inputs = [X, i64(*axes)] if axes else [X]
    (want,) = run_onnx(onnx_op, inputs, {"keepdims": keepdims})
    assert_same(got, want)


@pytest.mark.parametrize("op,onnx_op", [("reduce_sum", "ReduceSum"), ("reduce_max", "ReduceMax"),
                                        ("reduce_prod", "ReduceProd")])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_reduce_int_keeps_dtype(op, onnx_op, dtype):
    x = np.arange(-5, 7, dtype=dtype).reshape(3, 4)
    (got,) = run_llmc(op, [x], {"axes": [1], "keepdims": 0})
    assert_same(got, run_onnx(onnx_op, [x, i64(1)], {"keepdims": 0})[0])


def test_reduce_mean_int_truncates():
    x = np.array([[-3, -4], [3, 4]], np.int32)
    (got,) = run_llmc("reduce_mean", [x], {"axes": [1], "keepdims": 0})
    np.testing.assert_array_equal(got, [-3, 3])
    assert got.dtype == np.int32


@pytest.mark.parametrize("op,onnx_op", [("reduce_max", "ReduceMax"), ("reduce_min", "ReduceMin")])
def test_reduce_max_min_bool_and_empty(op, onnx_op):
    b = np.array([[True, False], [False, False]])
    (got,) = run_llmc(op, [b], {"axes": [1], "keepdims": 0})
    assert_same(got, run_onnx(onnx_op, [b, i64(1)], {"keepdims": 0}, opset=20)[0])
    for empty in (np.zeros((2, 0, 3), np.float32), np.zeros((2, 0), np.int32)):
        (got,) = run_llmc(op, [empty], {"axes": [1], "keepdims": 1})
        assert_same(got, run_onnx(onnx_op, [empty, i64(1)], {"keepdims": 1}, opset=20)[0])


def test_reduce_log_sum_exp_is_stable():
    x = np.array([[1000.0, 1000.0], [-1000.0, -1001.0]], np.float32)
    (got,) = run_llmc("reduce_log_sum_exp", [x], {"axes": [1], "keepdims": 0})
    np.testing.assert_allclose(got, [1000 + np.log(2), -1000 + np.log1p(np.exp(-1))], rtol=1e-6)


@pytest.mark.parametrize("op,onnx_op", [("argmax", "ArgMax"), ("argmin", "ArgMin")])
@pytest.mark.parametrize("axis,keepdims,last", [(0, 1, 0), (1, 0, 0), (2, 1, 1), (1, 0, 1)])
def test_arg(op, onnx_op, axis, keepdims, last):
    x = np.random.default_rng(3).integers(0, 3, size=(3, 4, 5)).astype(np.float32)  # ties
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
    (got,) = run_llmc(op, [x], attrs)
    assert_same(got, run_onnx(onnx_op, [x], attrs)[0])


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("axis,dtype", [(1, np.float32), (0, np.int64)])
def test_cumsum(exclusive, reverse, axis, dtype):
    x = (X * 10).astype(dtype)
    (got,) = run_llmc("cumsum", [x], {"axis": axis, "exclusive": exclusive, "reverse": reverse})
    (want,) = run_onnx("CumSum", [x, np.array(axis, np.int64)],
                       {"exclusive": exclusive, "reverse": reverse})
    assert_same(got, want)


def test_symbolic_reduce_shapes():
    b, s = D.sym("batch"), D.sym("seq")
    g = Graph("t")
    x = g.add_input("x", "float32", [b, s, 384])
    (m,) = g.add_node("reduce_mean", [x], {"axes": [2], "keepdims": 1})
    (a,) = g.add_node("argmax", [x], {"axis": 1, "keepdims": 0})
    (c,) = g.add_node("cumsum", [x], {"axis": 1})
    assert g.types[m].shape == (b, s, 1)
    assert str(g.types[a]) == "int64[batch, 384]"
    assert g.types[c].shape == (b, s, 384)


@pytest.mark.parametrize("op,attrs,dtype,msg", [
    ("reduce_sum", {"axes": [3]}, "float32", "axes 3 out of range for rank 2"),
    ("reduce_sum", {"axes": [0, 0]}, "float32", "repeats an axis"),
    ("reduce_sum", {"axes": [0]}, "bool", "numeric dtype"),
    ("cumsum", {"axis": 0}, "bool", "numeric dtype"),
    ("argmax", {"axis": 2}, "float32", "axis 2 out of range"),
])
def test_reduce_errors(op, attrs, dtype, msg):
    g = Graph("t")
    x = g.add_input("x", dtype, [2, 3])
    with pytest.raises(ShapeError, match=msg):
        g.add_node(op, [x], attrs)
