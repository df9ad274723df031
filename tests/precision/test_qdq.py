"""ONNX models in QDQ form (ORT quantize_static) import, fuse into qlinear_int8 and run as int8."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmc.backends import x86
from llmc.frontend import import_model
from llmc.interpreter import run_reference
from llmc.passes.quantize import fuse_qdq

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def qdq_model(tmp_path_factory):
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    d = tmp_path_factory.mktemp("qdq")
    w = RNG.standard_normal((16, 32)).astype(np.float32)
    b = RNG.standard_normal(32).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y0"]), helper.make_node("Add", ["y0", "B"], ["y"])],
        "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 32])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), d / "fp.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": RNG.standard_normal((2, 8, 16)).astype(np.float32)}
                            for _ in range(4)])

        def get_next(self):
            return next(self.it, None)
    quantize_static(str(d / "fp.onnx"), str(d / "qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    return d / "qdq.onnx", ort


def test_qdq_import_fuses_and_matches_onnxruntime(qdq_model):
    path, ort = qdq_model
    g = import_model(str(path))
    f, info = fuse_qdq(g)
    assert len(info["fused"]) == 1
    assert [n.op for n in f.nodes].count("qlinear_int8") == 1 and "matmul" not in \
        [n.op for n in f.nodes]
    x = RNG.standard_normal((2, 8, 16)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(run_reference(g, {"x": x})["y"], want, atol=1e-5)
    np.testing.assert_allclose(run_reference(f, {"x": x})["y"], want, atol=1e-5)
    r = x86.build(f)
    assert "quant_int8" in r.schedules.values()
    got = x86.run(r, {"x": x}, f.constants)["y"]
    # the output QuantizeLinear can flip one code where float rounding differs: one step
    # (the outputs are multiples of the output scale: the smallest gap between them)
    step = float(np.min(np.diff(np.unique(want))))
    assert np.abs(got - want).max() <= step + 1e-5
