"""Shape and data-movement ops against onnx.reference, plus symbolic shape inference."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from ir_testutil import assert_same, i64, rand, run_llmc, run_onnx

from llmc import dims as D
from llmc.errors import ShapeError
from llmc.ir import Graph

X = rand(2, 3, 4, seed=1)
INT_MIN = np.iinfo(np.int64).min


def test_reshape():
    (got,) = run_llmc("reshape", [X], {"shape": [6, 4]})
    assert_same(got, run_onnx("Reshape", [X, i64(6, 4)])[0])


@pytest.mark.parametrize("perm", [[0, 2, 1], [2, 0, 1], [2, 1, 0]])
def test_transpose(perm):
    (got,) = run_llmc("transpose", [X], {"perm": perm})
    assert_same(got, run_onnx("Transpose", [X], {"perm": perm})[0])


def test_expand():
    x = rand(3, 1, seed=2)
    (got,) = run_llmc("expand", [x], {"shape": [2, 3, 5]})
    assert_same(got, run_onnx("Expand", [x, i64(2, 3, 5)])[0])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_concat(axis):
    ys = [X, rand(*[5 if i == axis else d for i, d in enumerate(X.shape)], seed=3)]
    (got,) = run_llmc("concat", ys, {"axis": axis})
    assert_same(got, run_onnx("Concat", ys, {"axis": axis})[0])


def test_split():
    got = run_llmc("split", [X], {"axis": 2, "sizes": [1, 3]})
    want = run_onnx("Split", [X, i64(1, 3)], {"axis": 2}, n_out=2)
    for g_, w in zip(got, want):
        assert_same(g_, w)


SLICES = [
    ([1, 2], [0, 1], [2, 4], [1, 2]),
    ([2], [3], [-1], [-1]),          # through index 0, reversed
    ([2], [3], [0], [-2]),
    ([0, 1], [1, 0], [2, 3], [1, 1]),
    ([1], [2], [2], [1]),            # empty
    ([1], [2], [0], [-1]),
]


@pytest.mark.parametrize("axes,starts,ends,steps", SLICES)
def test_slice(axes, starts, ends, steps):
    (got,) = run_llmc("slice", [X], {"axes": axes, "starts": starts, "ends": ends, "steps": steps})
    onnx_ends = [INT_MIN if (e == -1 and s < 0) else e for e, s in zip(ends, steps)]
    (want,) = run_onnx("Slice", [X, i64(*starts), i64(*onnx_ends), i64(*axes), i64(*steps)])
    assert_same(got, want)


def test_squeeze_unsqueeze():
    x = rand(1, 3, 1, 2, seed=4)
    (got,) = run_llmc("squeeze", [x], {"axes": [0, 2]})
    assert_same(got, run_onnx("Squeeze", [x, i64(0, 2)])[0])
    (got,) = run_llmc("unsqueeze", [X], {"axes": [0, 3, 5]})
    assert_same(got, run_onnx("Unsqueeze", [X, i64(0, 3, 5)])[0])


@pytest.mark.parametrize("axis,ind", [
    (0, np.array([1, 0, -1], np.int64)),
    (1, np.array([[0, -3], [2, 1]], np.int32)),
    (2, np.array(3, np.int64)),
])
def test_gather(axis, ind):
    (got,) = run_llmc("gather", [X, ind], {"axis": axis})
    assert_same(got, run_onnx("Gather", [X, ind], {"axis": axis})[0])


def test_gather_elements():
    ind = np.array([[[0, 2, -1, 1]] * 3] * 2, np.int64)
    (got,) = run_llmc("gather_elements", [X, ind], {"axis": 1})
    assert_same(got, run_onnx("GatherElements", [X, ind], {"axis": 1})[0])


@pytest.mark.parametrize("batch_dims,ind", [
    (0, np.array([[0, 1], [1, -1]], np.int64)),
    (0, np.array([[[1, 2, 3]], [[0, 0, 0]]], np.int64)),
    (1, np.array([[2], [0]], np.int64)),
    (1, np.array([[[1, 3], [0, 0]], [[2, 2], [1, 1]]], np.int64)),
])
def test_gather_nd(batch_dims, ind):
    (got,) = run_llmc("gather_nd", [X, ind], {"batch_dims": batch_dims})
    assert_same(got, run_onnx("GatherND", [X, ind], {"batch_dims": batch_dims})[0])


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements(reduction):
    data = rand(3, 4, seed=5)
    ind = np.array([[1, 0, 2, -1], [0, 1, 1, 2]], np.int64)
    if reduction == "none":
        ind = np.array([[1, 0, 2, -1], [0, 1, 1, 2]], np.int64)
        ind[1] = [2, 2, 0, 0]
    upd = rand(2, 4, seed=6)
    (got,) = run_llmc("scatter_elements", [data, ind, upd], {"axis": 0, "reduction": reduction})
    (want,) = run_onnx("ScatterElements", [data, ind, upd], {"axis": 0, "reduction": reduction})
    assert_same(got, want)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd(reduction):
    data = rand(4, 3, seed=7)
    ind = np.array([[1], [3]] if reduction == "none" else [[1], [3], [1]], np.int64)
    upd = rand(len(ind), 3, seed=8)
    (got,) = run_llmc("scatter_nd", [data, ind, upd], {"reduction": reduction})
    (want,) = run_onnx("ScatterND", [data, ind, upd], {"reduction": reduction})
    assert_same(got, want)


@pytest.mark.parametrize("mode,pads", [
    ("constant", [0, 1, 2, 1, 0, 1]), ("reflect", [0, 1, 2, 0, 1, 1]),
    ("edge", [1, 0, 2, 0, 2, 1]), ("constant", [0, -1, 1, 0, 0, -2]),
    ("wrap", [0, 2, 1, 1, 0, 3]),
])
def test_pad(mode, pads):
    (got,) = run_llmc("pad", [X], {"pads": pads, "mode": mode, "value": 1.5})
    inputs = [X, i64(*pads)] + ([np.array(1.5, np.float32)] if mode == "constant" else [])
    # onnx.reference rejects negative pads (cropping); onnxruntime implements them
    engine = "ort" if min(pads) < 0 else "reference"
    assert_same(got, run_onnx("Pad", inputs, {"mode": mode}, engine=engine)[0])


def test_tile():
    (got,) = run_llmc("tile", [X], {"repeats": [2, 1, 3]})
    assert_same(got, run_onnx("Tile", [X, i64(2, 1, 3)])[0])


@pytest.mark.parametrize("upper,k", [(True, 0), (False, 0), (True, 1), (False, -1), (True, -2)])
def test_trilu(upper, k):
    (got,) = run_llmc("trilu", [X], {"upper": upper, "k": k})
    assert_same(got, run_onnx("Trilu", [X, np.array(k, np.int64)], {"upper": int(upper)})[0])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    x = rand(2, 8, 3, 2, seed=9)
    (got,) = run_llmc("depth_to_space", [x], {"blocksize": 2, "mode": mode})
    assert_same(got, run_onnx("DepthToSpace", [x], {"blocksize": 2, "mode": mode})[0])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_space_to_depth(mode):
    x = rand(2, 3, 4, 6, seed=10)
    (got,) = run_llmc("space_to_depth", [x], {"blocksize": 2, "mode": mode})
    # SpaceToDepth's mode attribute appeared in opset 28
    (want,) = run_onnx("SpaceToDepth", [x], {"blocksize": 2, "mode": mode}, opset=28)
    assert_same(got, want)
    (back,) = run_llmc("depth_to_space", [got], {"blocksize": 2, "mode": mode})
    assert_same(back, x)


@pytest.mark.parametrize("axis,dtype", [(2, "float32"), (0, "int64"), (1, "float32")])
def test_one_hot(axis, dtype):
    ind = np.array([[0, 3, -1], [5, -4, 2]], np.int64)   # 5 is out of range -> all off
    attrs = {"depth": 4, "axis": axis, "on_value": 3, "off_value": -1, "dtype": dtype}
    (got,) = run_llmc("one_hot", [ind], attrs)
    values = np.array([-1, 3], dtype=dtype)
    (want,) = run_onnx("OneHot", [ind, np.array(4, np.int64), values], {"axis": axis})
    assert_same(got, want)


@pytest.mark.parametrize("start,limit,delta,dtype", [
    (0, 10, 3, "int64"), (10, 2, -2, "int32"), (0.5, 2.0, 0.25, "float32"), (5, 5, 1, "int64"),
])
def test_range(start, limit, delta, dtype):
    (got,) = run_llmc("range", [], {"start": start, "limit": limit, "delta": delta,
                                    "dtype": dtype})
    args = [np.array(v, dtype) for v in (start, limit, delta)]
    assert_same(got, run_onnx("Range", args)[0])


def test_full_and_identity():
    (got,) = run_llmc("full", [], {"shape": [2, 3], "value": 7, "dtype": "int32"})
    value = numpy_helper.from_array(np.array([7], np.int32))
    assert_same(got, run_onnx("ConstantOfShape", [i64(2, 3)], {"value": value})[0])
    assert_same(run_llmc("identity", [X])[0], run_onnx("Identity", [X])[0])


# --------------------------------------------------------------------------- symbolic shapes
B, S = D.sym("batch"), D.sym("seq")


def _infer(op, types, attrs):
    g = Graph("t")
    names = [g.add_input(f"v{i}", dt, sh) for i, (dt, sh) in enumerate(types)]
    return [g.types[o] for o in g.add_node(op, names, attrs)]


def test_symbolic_reshape_transpose_concat():
    (t,) = _infer("reshape", [("float32", [B, S, 384])], {"shape": [B * S, 384]})
    assert t.shape == (B * S, 384)
    (t,) = _infer("transpose", [("float32", [B, S, 12, 32])], {"perm": [0, 2, 1, 3]})
    assert t.shape == (B, 12, S, 32)
    (t,) = _infer("concat", [("float32", [B, S, 4]), ("float32", [B, 1, 4])], {"axis": 1})
    assert t.shape == (B, S + 1, 4)


def test_symbolic_slice_split_gather():
    (t,) = _infer("slice", [("float32", [B, S])], {"axes": [1], "starts": [1], "ends": [S],
                                                   "steps": [1]})
    assert D.equal(t.shape[1], S - 1)
    (t,) = _infer("slice", [("float32", [B, S])], {"axes": [1], "starts": [0], "ends": [S],
                                                   "steps": [2]})
    assert D.evaluate(t.shape[1], {"seq": 7}) == 4 and D.evaluate(t.shape[1], {"seq": 8}) == 4
    t1, t2 = _infer("split", [("float32", [B, 2 * S])], {"axis": 1, "sizes": [S, S]})
    assert t1.shape == (B, S) and t2.shape == (B, S)
    (t,) = _infer("gather", [("float32", [30522, 384]), ("int64", [B, S])], {"axis": 0})
    assert t.shape == (B, S, 384)
    (t,) = _infer("range", [], {"start": 0, "limit": S, "delta": 1, "dtype": "int64"})
    assert t.shape == (S,)
    (t,) = _infer("dims_tensor", [], {"values": [B, S, 384], "dtype": "int64"})
    assert t.shape == (3,)


def test_symbolic_pad_tile_expand():
    (t,) = _infer("pad", [("float32", [B, S])], {"pads": [0, 1, 0, 2], "mode": "constant",
                                                 "value": 0.0})
    assert t.shape == (B, S + 3)
    (t,) = _infer("expand", [("float32", [1, S])], {"shape": [B, S]})
    assert t.shape == (B, S)
    (t,) = _infer("tile", [("float32", [B, 2])], {"repeats": [2, 3]})
    assert t.shape == (2 * B, 6)


def test_dims_tensor_runs_with_bound_symbols():
    from llmc.interpreter import run_reference
    g = Graph("t")
    x = g.add_input("x", "float32", [B, S])
    (shp,) = g.add_node("dims_tensor", [], {"values": [B * S, 1], "dtype": "int64"})
    (y,) = g.add_node("reshape", [x], {"shape": [B * S, 1]})
    g.set_outputs([shp, y])
    out = run_reference(g, {"x": np.zeros((3, 5), np.float32)})
    np.testing.assert_array_equal(out[shp], [15, 1])
    assert out[y].shape == (15, 1)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("op,types,attrs,msg", [
    ("reshape", [("float32", [2, 3])], {"shape": [4, 2]},
     r"cannot reshape \[2, 3\] \(6 elements\)"),
    ("reshape", [("float32", [B, 3])], {"shape": [B, 4]}, "cannot reshape"),
    ("transpose", [("float32", [2, 3])], {"perm": [0, 0]}, "repeats an axis"),
    ("concat", [("float32", [2, 3]), ("float32", [4, 5])], {"axis": 0}, "on axis 1"),
    ("concat", [("float32", [2, 3]), ("int64", [2, 3])], {"axis": 0}, "dtype int64 differs"),
    ("concat", [("float32", [2, 3])], {"axis": 2}, "axis 2 out of range for rank 2"),
    ("concat", [("float32", [2, 3])], {"axis": -1}, "axes are non-negative"),
    ("split", [("float32", [2, 6])], {"axis": 1, "sizes": [2, 3]}, "do not add up"),
    ("squeeze", [("float32", [2, 6])], {"axes": [0]}, "dim is 2, not 1"),
    ("gather", [("float32", [2, 6]), ("float32", [3])], {"axis": 0}, "int32 or int64"),
    ("pad", [("float32", [2, 6])], {"pads": [1, 1]}, "rank 2 needs 4"),
    ("expand", [("float32", [3, 2])], {"shape": [3, 4]}, "do not broadcast"),
    ("slice", [("float32", [3])], {"axes": [0], "starts": [0], "ends": [2], "steps": [0]},
     "non-zero int"),
])
def test_shape_errors(op, types, attrs, msg):
    with pytest.raises(ShapeError, match=msg):
        _infer(op, types, attrs)
