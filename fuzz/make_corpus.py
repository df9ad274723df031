"""Write the seed corpus (fuzz/corpus/): small valid ONNX models and compiled artifacts.

Run from the repo root: ``python fuzz/make_corpus.py``. Artifacts are built for generic
x86-64 (``--mcpu x86-64``) so that they load on any x86-64 CI machine and mutations reach the
checks past the target test. Seeds are regenerated only when missing (``--force`` to rebuild).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CORPUS = Path(__file__).resolve().parent / "corpus"


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "seed", inputs, outputs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def onnx_seeds() -> dict[str, onnx.ModelProto]:
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    vi = helper.make_tensor_value_info
    seeds = {}
    seeds["mlp"] = _model(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])],
        [vi("x", TensorProto.FLOAT, ["batch", 8])], [vi("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(f(8, 4), "w"), numpy_helper.from_array(f(4), "b")])
    seeds["conv"] = _model(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Flatten", ["p"], ["fl"]),
         helper.make_node("Gemm", ["fl", "g"], ["y"], transB=1)],
        [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])], [vi("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(f(4, 3, 3, 3), "w"), numpy_helper.from_array(f(5, 64), "g")])
    seeds["shape_ops"] = _model(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Gather", ["s", "i0"], ["d0"], axis=0),
         helper.make_node("Unsqueeze", ["d0", "ax"], ["d0u"]),
         helper.make_node("Concat", ["d0u", "m1"], ["shp"], axis=0),
         helper.make_node("Reshape", ["x", "shp"], ["r"]),
         helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
         helper.make_node("Softmax", ["t"], ["y"], axis=-1)],
        [vi("x", TensorProto.FLOAT, ["n", 2, 3])], [vi("y", TensorProto.FLOAT, [6, "n"])],
        [helper.make_tensor("i0", TensorProto.INT64, [], [0]),
         helper.make_tensor("ax", TensorProto.INT64, [1], [0]),
         helper.make_tensor("m1", TensorProto.INT64, [1], [-1])])
    seeds["misc"] = _model(
        [helper.make_node("ConstantOfShape", ["shp"], ["z"],
                          value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
         helper.make_node("Add", ["x", "z"], ["a"]),
         helper.make_node("ReduceSum", ["a", "axes"], ["r"], keepdims=1),
         helper.make_node("Cast", ["r"], ["c"], to=TensorProto.INT64),
         helper.make_node("Where", ["cond", "a", "x"], ["y"])],
        [vi("x", TensorProto.FLOAT, [2, 3]), vi("cond", TensorProto.BOOL, [2, 3])],
        [vi("y", TensorProto.FLOAT, [2, 3]), vi("c", TensorProto.INT64, [2, 1])],
        [helper.make_tensor("shp", TensorProto.INT64, [2], [2, 3]),
         helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    return seeds


def artifact_seeds() -> dict[str, bytes]:
    import llmc
    from llmc.frontends.onnx import import_onnx

    out = {}
    for name in ("mlp", "misc"):
        graph = import_onnx(onnx_seeds()[name])
        out[name] = llmc.compile(graph, target="x86", mcpu="x86-64").to_bytes()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    for name, m in onnx_seeds().items():
        path = CORPUS / "onnx" / f"{name}.onnx"
        if args.force or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(m.SerializeToString())
    art_dir = CORPUS / "artifact"
    if args.force or not any(art_dir.glob("*.artifact")):
        art_dir.mkdir(parents=True, exist_ok=True)
        for name, data in artifact_seeds().items():
            (art_dir / f"{name}.artifact").write_bytes(data)
    for p in sorted(CORPUS.rglob("*.*")):
        print(f"{p.relative_to(CORPUS)}  {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
