"""A systolic artifact goes through the normal pipeline, file and runtime."""
import numpy as np

from llmc.backends.systolic import prepare_graph, runtime_hook
from llmc.interpreter import run_reference
from llmc.pipeline import CompileOptions, compile_graph

from .test_backend import _mlp


def test_artifact_roundtrip(tmp_path):
    import llmc.runtime

    g = _mlp(4)
    rng = np.random.default_rng(5)
    cal = [{"x": rng.standard_normal((2, 5, 40)).astype(np.float32)}]
    g8 = prepare_graph(g, calibration=cal)         # int8 graph: the pipeline needs no options
    art = compile_graph(g8, CompileOptions(target="systolic"))
    assert art.manifest["target"]["name"] == "systolic"
    assert art.manifest["target"]["runtime_hook"] == runtime_hook.__name__
    path = art.save(str(tmp_path / "m.llmc"))
    model = llmc.runtime.load(path)
    x = rng.standard_normal((2, 5, 40)).astype(np.float32)
    with runtime_hook.profile() as s:
        out = model.run({"x": x})
    got = out[g.outputs[0]] if isinstance(out, dict) else out[0]
    want = run_reference(g8, {"x": x})[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(s.records) == 2
