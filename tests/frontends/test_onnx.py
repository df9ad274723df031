"""ONNX frontend: small helper-built models and exported torch modules against onnxruntime."""
from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmc import dims as D
from llmc.errors import FrontendError, UnsupportedOpError
from llmc.frontends.onnx import import_onnx, supported_ops
from llmc.interpreter import run_reference

import onnxruntime as ort

F32 = TensorProto.FLOAT
I64 = TensorProto.INT64
RTOL, ATOL = 1e-4, 1e-5


# ----------------------------------------------------------------------------- helpers
def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, inits=(), opset=17, name="g"):
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()]
    graph = helper.make_graph(nodes, name, inputs, outputs, tensors)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _ort(model, feed):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed)))


def _check(model, feed, **import_kw):
    """Import, run the numpy reference and compare every output with onnxruntime."""
    g = import_onnx(model, **import_kw)
    g.verify()
    got = run_reference(g, feed)
    want = _ort(model, feed)
    assert list(got) == [o.name for o in model.graph.output]
    for name, ref in want.items():
        assert got[name].dtype == ref.dtype, name
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=RTOL, atol=ATOL, err_msg=name)
    return g


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _unary(op, opset=17, shape=(2, 3, 4), **attrs):
    return _model([helper.make_node(op, ["x"], ["y"], **attrs)], [_vi("x", F32, shape)],
                  [_vi("y", F32, None)], opset=opset)


# ----------------------------------------------------------------------------- single ops
@pytest.mark.parametrize("op,attrs,opset", [
    ("Relu", {}, 17), ("Sigmoid", {}, 17), ("Tanh", {}, 17), ("Erf", {}, 17), ("Abs", {}, 17),
    ("LeakyRelu", {"alpha": 0.2}, 17), ("Elu", {}, 17), ("Selu", {}, 17),
    ("HardSigmoid", {}, 17), ("Softplus", {}, 17), ("Gelu", {}, 20),
    ("Gelu", {"approximate": "tanh"}, 20), ("Softmax", {}, 17), ("Softmax", {"axis": 1}, 17),
    ("Softmax", {"axis": 1}, 11), ("LogSoftmax", {"axis": 0}, 11), ("Hardmax", {}, 13),
    ("Flatten", {"axis": 2}, 17), ("Identity", {}, 17), ("Dropout", {}, 17),
    ("Transpose", {"perm": [2, 0, 1]}, 17), ("Transpose", {}, 17),
    ("ReduceMean", {"axes": [-1], "keepdims": 0}, 13), ("ReduceMax", {"axes": [0, 2]}, 17),
    ("ReduceSum", {"keepdims": 0}, 11), ("ArgMax", {"axis": 1, "keepdims": 0}, 17),
    ("Clip", {"min": -0.5, "max": 0.5}, 10), ("Squeeze", {"axes": [0]}, 11),
    ("Unsqueeze", {"axes": [0, -1]}, 11), ("Split", {"axis": 2, "split": [1, 3]}, 11),
])
def test_unary_family(op, attrs, opset):
    shape = (1, 3, 4) if op == "Squeeze" else (2, 3, 4)
    n_out = 2 if op == "Split" else 1
    outs = ["y", "z"][:n_out]
    m = _model([helper.make_node(op, ["x"], outs, **attrs)], [_vi("x", F32, shape)],
               [_vi(o, TensorProto.INT64 if op == "ArgMax" else F32, None) for o in outs],
               opset=opset)
    _check(m, {"x": _rand(*shape)})


@pytest.mark.parametrize("op,opset", [("ReduceMean", 18), ("ReduceSum", 13), ("Squeeze", 13),
                                      ("Unsqueeze", 13)])
def test_axes_as_input(op, opset):
    axes = np.array([0] if op == "Squeeze" else [1, -1], np.int64)
    shape = (1, 3, 4)
    m = _model([helper.make_node(op, ["x", "axes"], ["y"])], [_vi("x", F32, shape)],
               [_vi("y", F32, None)], inits={"axes": axes}, opset=opset)
    _check(m, {"x": _rand(*shape)})


@pytest.mark.parametrize("op,n", [("Sum", 3), ("Max", 3), ("Min", 2), ("Mean", 3),
                                  ("Add", 2), ("Sub", 2), ("Mul", 2), ("Div", 2), ("Pow", 2),
                                  ("PRelu", 2), ("Greater", 2)])
def test_variadic_and_binary(op, n):
    names = [f"x{i}" for i in range(n)]
    shapes = [(2, 3, 4), (3, 4), (1, 4)][:n]
    out_t = TensorProto.BOOL if op == "Greater" else F32
    m = _model([helper.make_node(op, names, ["y"])],
               [_vi(k, F32, s) for k, s in zip(names, shapes)], [_vi("y", out_t, None)])
    feed = {k: np.abs(_rand(*s, seed=i)) + 0.5 for i, (k, s) in enumerate(zip(names, shapes))}
    _check(m, feed)


@pytest.mark.parametrize("attrs,with_c", [({}, True), ({"transA": 1, "alpha": 0.5}, True),
                                          ({"transB": 1, "beta": 2.0}, True), ({}, False)])
def test_gemm(attrs, with_c):
    a = _rand(4, 3) if attrs.get("transA") else _rand(3, 4)
    b = _rand(5, 4, seed=1) if attrs.get("transB") else _rand(4, 5, seed=1)
    ins = ["a", "b"] + (["c"] if with_c else [])
    m = _model([helper.make_node("Gemm", ins, ["y"], **attrs)], [_vi("a", F32, a.shape)],
               [_vi("y", F32, None)], inits={"b": b, **({"c": _rand(5, seed=2)} if with_c else {})})
    _check(m, {"a": a})


@pytest.mark.parametrize("attrs", [{"pads": [1, 1, 1, 1]},
                                   {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
                                   {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
                                   {"auto_pad": "VALID", "dilations": [2, 2]}, {"group": 2}])
def test_conv_and_pool(attrs):
    x = _rand(1, 4, 7, 7)
    w = _rand(6, 4 // attrs.get("group", 1), 3, 3, seed=1)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs),
             helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_UPPER"),
             helper.make_node("AveragePool", ["c"], ["z"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              count_include_pad=1),
             helper.make_node("GlobalAveragePool", ["c"], ["g"])]
    m = _model(nodes, [_vi("x", F32, x.shape)], [_vi(o, F32, None) for o in "yzg"],
               inits={"w": w, "b": _rand(6, seed=2)})
    _check(m, {"x": x})


def test_normalizations():
    x = _rand(2, 3, 4, 5)
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("InstanceNormalization", ["x", "s", "b"], ["inn"]),
             helper.make_node("LayerNormalization", ["x", "ls", "lb"], ["ln"], axis=-2)]
    inits = {"s": _rand(3, seed=1), "b": _rand(3, seed=2), "m": _rand(3, seed=3),
             "v": np.abs(_rand(3, seed=4)) + 0.1, "ls": _rand(4, 5, seed=5), "lb": _rand(5, seed=6)}
    m = _model(nodes, [_vi("x", F32, x.shape)], [_vi(o, F32, None) for o in ("bn", "inn", "ln")],
               inits=inits)
    _check(m, {"x": x})


def test_layer_norm_mean_output_refused():
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean"], name="ln0")
    m = _model([node], [_vi("x", F32, (2, 4))], [_vi("y", F32, None), _vi("mean", F32, None)],
               inits={"s": _rand(4)})
    with pytest.raises(UnsupportedOpError, match="ln0.*Mean"):
        import_onnx(m)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_modes(mode):
    x = _rand(2, 3, 4)
    ins = ["x", "pads"] + (["v"] if mode == "constant" else [])
    inits = {"pads": np.array([0, 1, 2, 0, 2, 1], np.int64)}
    if mode == "constant":
        inits["v"] = np.array(1.5, np.float32)
    m = _model([helper.make_node("Pad", ins, ["y"], mode=mode)], [_vi("x", F32, x.shape)],
               [_vi("y", F32, None)], inits=inits)
    _check(m, {"x": x})


def test_clip_split_slice_inputs():
    x = _rand(4, 6)
    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
             helper.make_node("Split", ["c", "sizes"], ["s0", "s1"], axis=1),
             helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["sl"]),
             helper.make_node("Slice", ["x", "st2", "en2"], ["sl2"])]
    inits = {"lo": np.array(-0.3, np.float32), "hi": np.array(0.4, np.float32),
             "sizes": np.array([2, 4], np.int64), "st": np.array([-1, 1], np.int64),
             "en": np.array([-10 ** 18, 100], np.int64), "ax": np.array([0, 1], np.int64),
             "sp": np.array([-2, 2], np.int64), "st2": np.array([1], np.int64),
             "en2": np.array([2 ** 62], np.int64)}
    m = _model(nodes, [_vi("x", F32, x.shape)],
               [_vi(o, F32, None) for o in ("s0", "s1", "sl", "sl2")],
               inits=inits)
    _check(m, {"x": x})


def test_gather_scatter_family():
    x = _rand(4, 5)
    idx = np.array([[0, 3], [-1, 1]], np.int64)
    eidx = np.array([[0, 4], [3, 1], [2, 2], [4, 0]], np.int64)
    nidx = np.array([[0, 1], [3, 4]], np.int64)
    nodes = [helper.make_node("Gather", ["x", "i"], ["g"], axis=1),
             helper.make_node("GatherElements", ["x", "ei"], ["ge"], axis=1),
             helper.make_node("GatherND", ["x", "ni"], ["gn"]),
             helper.make_node("ScatterElements", ["x", "ei", "u"], ["se"], axis=1, reduction="add"),
             helper.make_node("ScatterND", ["x", "ni", "nu"], ["sn"]),
             helper.make_node("Trilu", ["x", "k"], ["tr"], upper=0),
             helper.make_node("CumSum", ["x", "ax"], ["cs"], reverse=1),
             helper.make_node("Where", ["cond", "x", "y"], ["w"]),
             helper.make_node("Cast", ["x"], ["ci"], to=TensorProto.INT32),
             helper.make_node("CastLike", ["ci", "x"], ["cl"])]
    inits = {"i": idx, "ei": eidx, "ni": nidx, "u": _rand(4, 2, seed=1), "nu": _rand(2, seed=2),
             "k": np.array(1, np.int64), "ax": np.array(0, np.int64)}
    m = _model(nodes, [_vi("x", F32, x.shape), _vi("cond", TensorProto.BOOL, (4, 5)),
                       _vi("y", F32, (1, 5))],
               [_vi(o, F32, None) for o in ("g", "ge", "gn", "se", "sn", "tr", "cs", "w")]
               + [_vi("ci", TensorProto.INT32, None), _vi("cl", F32, None)], inits=inits)
    _check(m, {"x": x * 3, "cond": _rand(4, 5, seed=3) > 0, "y": _rand(1, 5, seed=4)})


# ----------------------------------------------------------------------------- shape subgraphs
def _transformer_style_model(opset=17):
    """x[batch, seq, 16] -> heads via Shape->Gather->Unsqueeze->Concat->Reshape, plus
    ConstantOfShape/Range/Expand/Tile arguments computed from the same shape chain."""
    h, hd = 4, 4
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shp"]),
        n("Gather", ["shp", "i0"], ["b"], axis=0),
        n("Gather", ["shp", "i1"], ["s"], axis=0),
        n("Unsqueeze", ["b", "ax0"], ["b1"]),
        n("Unsqueeze", ["s", "ax0"], ["s1"]),
        n("Concat", ["b1", "s1", "heads"], ["tgt"], axis=0),
        n("MatMul", ["x", "w"], ["q"]),
        n("Reshape", ["q", "tgt"], ["q4"]),
        n("Transpose", ["q4"], ["qt"], perm=[0, 2, 1, 3]),
        n("Transpose", ["q4"], ["kt"], perm=[0, 2, 3, 1]),
        n("MatMul", ["qt", "kt"], ["att"]),
        n("Softmax", ["att"], ["p"], axis=-1),
        n("MatMul", ["p", "qt"], ["ctx"]),
        n("Transpose", ["ctx"], ["ct"], perm=[0, 2, 1, 3]),
        n("Concat", ["b1", "s1", "minus1"], ["tgt2"], axis=0),
        n("Reshape", ["ct", "tgt2"], ["y"]),
        # a positions row from Range(0, seq) and a mask from ConstantOfShape([b, s])
        n("Cast", ["s", ], ["s_f"], to=TensorProto.INT64),
        n("Range", ["zero", "s_f", "one"], ["pos"]),
        n("Concat", ["b1", "s1"], ["bs"], axis=0),
        n("ConstantOfShape", ["bs"], ["ones"], value=helper.make_tensor("v", F32, [1], [1.0])),
        n("Expand", ["pos", "bs"], ["pos2"]),
        n("Cast", ["pos2"], ["pos_f"], to=F32),
        n("Add", ["pos_f", "ones"], ["posm"]),
        n("Mul", ["b", "s"], ["bs_prod"]),
        n("Unsqueeze", ["bs_prod", "ax0"], ["bs_prod1"]),
        n("Concat", ["bs_prod1", "dim16"], ["flat_t"], axis=0),
        n("Reshape", ["x", "flat_t"], ["flat"]),
        n("Shape", ["flat"], ["flat_shape"]),
    ]
    inits = {"i0": np.array(0, np.int64), "i1": np.array(1, np.int64),
             "ax0": np.array([0], np.int64), "heads": np.array([h, hd], np.int64),
             "minus1": np.array([-1], np.int64), "w": _rand(16, 16, seed=7),
             "zero": np.array(0, np.int64), "one": np.array(1, np.int64),
             "dim16": np.array([16], np.int64)}
    return _model(nodes, [_vi("x", F32, ["batch", "seq", 16])],
                  [_vi("y", F32, None), _vi("posm", F32, None), _vi("flat", F32, None),
                   _vi("flat_shape", I64, None)], inits=inits, opset=opset, name="tiny_attn")


@pytest.mark.parametrize("batch,seq", [(2, 5), (3, 7)])
def test_transformer_style_shape_chains(batch, seq):
    m = _transformer_style_model()
    g = _check(m, {"x": _rand(batch, seq, 16)})
    b, s = D.sym("batch"), D.sym("seq")
    assert g.types["x"].shape == (b, s, 16)
    assert g.types["y"].shape == (b, s, 16)
    assert g.types["flat"].shape == (b * s, 16)
    ops = {n.op for n in g.nodes}
    assert not ops & {"gather", "concat", "unsqueeze"}, "shape chains must fold at import"
    reshapes = [n.attrs["shape"] for n in g.nodes if n.op == "reshape"]
    assert [b, s, 4, 4] in reshapes


def test_graph_io_names_and_dims():
    m = _model([helper.make_node("Add", ["x", "w"], ["y"]),
                helper.make_node("Shape", ["x"], ["shape"]),
                helper.make_node("Identity", ["x"], ["x_copy"])],
               [_vi("x", F32, ["N", None, 3]), _vi("w", F32, [3])],
               [_vi("y", F32, None), _vi("shape", I64, None), _vi("x_copy", F32, None)],
               inits={"w": _rand(3)}, name="io_graph")
    g = import_onnx(m)
    assert g.name == "io_graph"
    assert g.inputs == ["x"]  # the initializer listed as an input is not a graph input
    assert g.types["x"].shape == (D.sym("N"), D.sym("unk_0"), 3)
    assert g.outputs == ["y", "shape", "x_copy"]
    out = run_reference(g, {"x": _rand(2, 5, 3)})
    np.testing.assert_array_equal(out["shape"], np.array([2, 5, 3]))
    g2 = import_onnx(m, input_shapes={"x": [4, "seq", 3]})
    assert g2.types["x"].shape == (4, D.sym("seq"), 3)


def test_external_data(tmp_path):
    w = _rand(64, 64)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [_vi("x", F32, [2, 64])],
               [_vi("y", F32, None)], inits={"w": w})
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").is_file()
    x = _rand(2, 64, seed=1)
    out = run_reference(import_onnx(path), {"x": x})
    np.testing.assert_allclose(out["y"], x @ w, rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------- errors
def test_unsupported_op_names_op_node_opset():
    m = _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk_1")],
               [_vi("x", F32, [4])], [_vi("v", F32, None), _vi("i", I64, None)],
               inits={"k": np.array([2], np.int64)}, opset=17)
    with pytest.raises(UnsupportedOpError, match=r"'TopK' \(node 'topk_1', opset 17\)"):
        import_onnx(m)
    assert "Add" in supported_ops() and "TopK" not in supported_ops()


def test_data_dependent_shape_is_refused():
    nodes = [helper.make_node("Cast", ["s"], ["si"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "si"], ["y"], name="r")]
    m = _model(nodes, [_vi("x", F32, [2, 3]), _vi("s", F32, [2])], [_vi("y", F32, None)])
    with pytest.raises(UnsupportedOpError, match="run time"):
        import_onnx(m)


def test_malformed_files(tmp_path):
    good = _unary("Relu").SerializeToString()
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(FrontendError, match="trunc.onnx"):
        import_onnx(trunc)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not protobuf \xff\xfe\x00 at all" * 3)
    with pytest.raises(FrontendError, match="junk.onnx"):
        import_onnx(junk)
    with pytest.raises(FrontendError, match="does not exist"):
        import_onnx(tmp_path / "missing.onnx")


def test_missing_initializer_and_cycle():
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "g",
                              [_vi("x", F32, [2, 2])], [_vi("y", F32, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(FrontendError, match="'mm'.*'W'"):
        import_onnx(m)
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                               helper.make_node("Relu", ["a"], ["b"], name="n2")], "g",
                              [_vi("x", F32, [2])], [_vi("a", F32, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(FrontendError, match="cycle"):
        import_onnx(m)


# ----------------------------------------------------------------------------- torch exports
def _export_torchscript(module, x, path, opset):
    import torch
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch", 1: "seq"}}, opset_version=opset,
                          dynamo=False)
    return path


@pytest.mark.parametrize("exporter", ["torchscript17",
                                      pytest.param("dynamo18", marks=pytest.mark.slow)])
def test_torch_export_gpt2_block(tmp_path, exporter):
    from tests.models import export_onnx, gpt2_block, gpt2_input

    block = gpt2_block(dim=64, heads=4)
    path = tmp_path / "block.onnx"
    if exporter == "torchscript17":
        _export_torchscript(block, gpt2_input(2, 8, 64), path, 17)
    else:
        export_onnx(block, (gpt2_input(2, 8, 64),), path, ["x"], ["y"],
                    dynamic_axes={"x": {0: "batch", 1: "seq"}}, opset=18)
    g = import_onnx(path)
    assert g.types["x"].shape[:2] == (D.sym("batch"), D.sym("seq"))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, s in ((2, 8), (3, 5)):
        x = gpt2_input(b, s, 64).numpy()
        np.testing.assert_allclose(run_reference(g, {"x": x})["y"], sess.run(None, {"x": x})[0],
                                   rtol=RTOL, atol=ATOL)


def test_torch_export_cnn(tmp_path):
    import torch

    from tests.models import resnet_cnn, resnet_input

    net = resnet_cnn(width=8)
    path = tmp_path / "cnn.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (resnet_input(2),), str(path), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    g = import_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x = resnet_input(b, seed=b).numpy()
        np.testing.assert_allclose(run_reference(g, {"x": x})["y"], sess.run(None, {"x": x})[0],
                                   rtol=RTOL, atol=1e-4)


def test_constant_and_initializer_outputs_keep_onnx_names():
    nodes = [helper.make_node("Constant", [], ["c"], value_ints=[1, 2, 3]),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Add", ["x", "w"], ["y"])]
    m = _model(nodes, [_vi("x", F32, [2, 3])],
               [_vi("c", I64, None), _vi("s", I64, None), _vi("y", F32, None), _vi("w", F32, None)],
               inits={"w": _rand(3)})
    g = import_onnx(m)
    assert g.outputs == ["c", "s", "y", "w"]
    g.verify()
    _check(m, {"x": _rand(2, 3, seed=1)})


@pytest.mark.parametrize("name", ["light_squeezenet", "light_inception_v1", "light_shufflenet"])
def test_onnx_light_models(name):
    """Real CNN graphs at older opsets (7..9) that the onnx package ships with light weights."""
    import pathlib

    path = pathlib.Path(onnx.__file__).parent / "backend/test/data/light" / f"{name}.onnx"
    model = onnx.load(str(path))
    weights = {t.name for t in model.graph.initializer}
    (inp,) = [i for i in model.graph.input if i.name not in weights]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    _check(model, {inp.name: _rand(*shape)})


def test_ops_without_converter_import_through_their_function_body():
    x = _rand(2, 3, 4, 5)
    labels = np.random.default_rng(0).integers(0, 3, (2, 20)).astype(np.int64)
    nodes = [helper.make_node("MeanVarianceNormalization", ["x"], ["mvn"]),
             helper.make_node("Reshape", ["x", "shp"], ["x3"]),
             helper.make_node("SoftmaxCrossEntropyLoss", ["x3", "labels"], ["loss"],
                              reduction="mean")]
    m = _model(nodes, [_vi("x", F32, x.shape), _vi("labels", I64, labels.shape)],
               [_vi("mvn", F32, None), _vi("loss", F32, None)],
               inits={"shp": np.array([2, 3, -1], np.int64)}, opset=17)
    assert "MeanVarianceNormalization" not in supported_ops()
    _check(m, {"x": x, "labels": labels})


def test_if_with_constant_condition_is_inlined():
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"])], "then", [],
                               [_vi("t", F32, None)])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [_vi("e", F32, None)])
    nodes = [helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)]
    for flag in (True, False):
        m = _model(nodes, [_vi("x", F32, [3, 4])], [_vi("y", F32, None)],
                   inits={"cond": np.array(flag)})
        g = _check(m, {"x": _rand(3, 4)})
        ops = {n.op for n in g.nodes}
        assert ("relu" in ops, "neg" in ops) == (flag, not flag)
    m = _model(nodes, [_vi("x", F32, [3, 4]), _vi("cond", TensorProto.BOOL, [])],
               [_vi("y", F32, None)])
    with pytest.raises(UnsupportedOpError, match="control flow"):
        import_onnx(m)


@pytest.mark.parametrize("batch,seq", [(1, 4), (3, 6)])
def test_symbolic_expand_where_pattern_and_slices(batch, seq):
    """The exporter idioms: Expand to Where(Equal(shape, -1), 1, shape); Slice to INT64_MAX and
    from a negative start on symbolic dims; Reshape with 0 and -1."""
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["s"]),
        n("Slice", ["s", "z1", "two1"], ["bs"]),              # [batch, seq]
        n("Concat", ["bs", "eight"], ["target"], axis=0),       # [batch, seq, 8]
        n("Equal", ["target", "neg1"], ["is_neg"]),
        n("ConstantOfShape", ["three"], ["ones"], value=helper.make_tensor("v", I64, [1], [1])),
        n("Where", ["is_neg", "ones", "target"], ["shape2"]),
        n("Expand", ["bias", "shape2"], ["e"]),
        n("Add", ["x", "e"], ["y"]),
        n("Slice", ["x", "one1", "big1", "one1"], ["tail"]),   # x[:, 1:]
        n("Slice", ["x", "m2", "big1", "one1"], ["last2"]),    # x[:, -2:]
        n("Reshape", ["x", "zero_m1"], ["flat"]),
    ]
    inits = {"z1": np.array([0], np.int64), "two1": np.array([2], np.int64),
             "eight": np.array([8], np.int64), "neg1": np.array([-1], np.int64),
             "three": np.array([3], np.int64), "bias": _rand(1, 1, 8, seed=3),
             "one1": np.array([1], np.int64), "big1": np.array([2 ** 63 - 1], np.int64),
             "m2": np.array([-2], np.int64), "zero_m1": np.array([0, -1], np.int64)}
    m = _model(nodes, [_vi("x", F32, ["batch", "seq", 8])],
               [_vi(o, F32, None) for o in ("y", "tail", "last2", "flat")], inits=inits)
    g = _check(m, {"x": _rand(batch, seq, 8)})
    b, s = D.sym("batch"), D.sym("seq")
    assert g.types["tail"].shape == (b, s - 1, 8)
    assert g.types["last2"].shape == (b, 2, 8)
    assert g.types["flat"].shape == (b, 8 * s)
    assert "where" not in {n.op for n in g.nodes}
