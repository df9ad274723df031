"""Op test helpers: one llmc op through a Graph, one ONNX node through onnx.reference."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from llmc.dtypes import from_numpy, to_numpy
from llmc.interpreter import run_reference
from llmc.ir import Graph


def run_llmc(op: str, inputs: Sequence[np.ndarray | None], attrs: dict | None = None
             ) -> list[np.ndarray]:
    """Build a one-node graph (inputs as graph inputs), verify it, run the numpy reference.

    Also checks that every result has exactly the dtype and shape shape inference promised.
    """
    g = Graph("t")
    names = []
    for k, a in enumerate(inputs):
        names.append("" if a is None else g.add_input(f"in{k}", from_numpy(a.dtype), a.shape))
    outs = g.add_node(op, names, attrs or {})
    g.set_outputs(outs)
    g.verify()
    res = run_reference(g, {n: a for n, a in zip(names, inputs) if n})
    for o in outs:
        ty = g.types[o]
        assert res[o].dtype == to_numpy(ty.dtype), (op, res[o].dtype, ty)
        assert res[o].shape == tuple(ty.shape), (op, res[o].shape, ty)
    return [res[o] for o in outs]


def run_onnx(op_type: str, inputs: Sequence[np.ndarray | None], attrs: dict | None = None,
             n_out: int = 1, opset: int = 22, domain: str = "", engine: str = "reference"
             ) -> list[np.ndarray]:
    """Run one ONNX node with onnx.reference.ReferenceEvaluator (the golden values).

    ``engine="ort"`` runs it with onnxruntime instead, for cases onnx.reference gets wrong.
    """
    in_names, vis, feeds = [], [], {}
    for k, a in enumerate(inputs):
        if a is None:
            in_names.append("")
            continue
        name = f"in{k}"
        in_names.append(name)
        a = np.asarray(a)
        vis.append(helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)))
        feeds[name] = a
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op_type, in_names, outs, domain=domain, **(attrs or {}))
    out_vis = [onnx.ValueInfoProto(name=o) for o in outs]
    graph = helper.make_graph([node], "t", vis, out_vis)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if engine == "ort":
        import onnxruntime as ort
        model.ir_version = 10
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        typed = {v.name: v for v in model.graph.value_info}
        for o in model.graph.output:
            if o.name in typed:
                o.type.CopyFrom(typed[o.name].type)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return [np.asarray(r) for r in sess.run(None, feeds)]
    return [np.asarray(r) for r in ReferenceEvaluator(model).run(None, feeds)]


def assert_same(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6,
                exact_dtype: bool = True) -> None:
    """Equal dtype and shape, values close (exact for ints and bools, NaN matches NaN)."""
    want = np.asarray(want)
    if exact_dtype:
        assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    if got.dtype.kind in "iub":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=atol, equal_nan=True)


def i64(*v: Any) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def rand(*shape: int, seed: int = 0, dtype=np.float32, lo: float = -2.0, hi: float = 2.0
         ) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(dtype)
