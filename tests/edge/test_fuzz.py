"""The CI share of the fuzzing (~60 s): hypothesis over the ONNX frontend and the artifact
loader. Nothing but llmc's own errors may escape, no input may hang or allocate without bound.
The longer on-demand run is ``python fuzz/run_hypothesis.py`` or the atheris entry points."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
sys.path.insert(0, str(FUZZ))

import harness  # noqa: E402
import run_hypothesis as R  # noqa: E402
import strategies as S  # noqa: E402

pytestmark = pytest.mark.slow


def _ci(n: int):
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def _warm():
    harness.warm_up()


def test_corpus_seeds_are_valid_and_accepted():
    """The seeds are real inputs: every one imports / loads and runs without an error."""
    harness.STATS = stats = harness.Stats()
    for data in R.seeds("onnx"):
        assert harness.check(harness.onnx_bytes, data) is not None
    for data in R.seeds("artifact"):
        assert harness.check(harness.artifact_bytes, data) is not None
    assert stats.executions == stats.accepted >= 5 and not stats.findings


def test_regressions_replay():
    """Inputs that were findings once (fuzz/corpus/regressions/) pass the oracle now."""
    files = sorted((FUZZ / "corpus" / "regressions").iterdir())
    assert files
    for path in files:
        call = harness.onnx_bytes if path.suffix == ".onnx" else harness.artifact_bytes
        harness.check(call, path.read_bytes())


@_ci(150)
@given(S.onnx_models())
def test_fuzz_onnx_models(model):
    harness.check(harness.onnx_model, model)


@_ci(1200)
@given(S.mutated(R.seeds("onnx")))
def test_fuzz_onnx_bytes(data):
    harness.check(harness.onnx_bytes, data)


@_ci(1200)
@given(S.mutated(R.seeds("artifact")))
def test_fuzz_artifact_bytes(data):
    harness.check(harness.artifact_bytes, data)


@_ci(300)
@given(S.artifact_edits(R.seeds("artifact")))
def test_fuzz_artifact_edits(data):
    harness.check(harness.artifact_bytes, data)


def test_oracle_reports_foreign_errors_and_hangs(monkeypatch):
    """The oracle itself can fail: a non-llmc exception, a hang and a memory blow-up are findings."""
    harness.STATS = harness.Stats()

    def boom():
        raise KeyError("x")

    def spin():
        while True:
            pass

    def hog():
        import numpy as np
        return np.ones(harness.MEMORY_LIMIT_BYTES // 8 + 1024)

    monkeypatch.setattr(harness, "TIME_LIMIT_S", 0.2)
    for fn, kind in ((boom, "KeyError"), (spin, "hang"), (hog, "memory")):
        with pytest.raises(harness.FuzzFinding, match=kind):
            harness.check(fn)
    assert len(harness.STATS.findings) == 3


# ------------------------------------------------------------------ the named hazards, one each
def _model(nodes, inputs, inits=(), outputs=("y",)):
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "hazard", inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _x(shape):
    from onnx import TensorProto, helper

    return [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]


def test_hazards_stay_bounded():
    """Huge dims, a 3000-node chain, a cycle and a missing initializer: an llmc error or a
    graph, within the oracle's time and memory limits (check() raises FuzzFinding otherwise)."""
    from onnx import TensorProto, helper

    harness.STATS = stats = harness.Stats()
    huge = helper.make_tensor("shape", TensorProto.INT64, [3], [2**20, 2**20, 2**20])
    cases = {
        "huge ConstantOfShape": _model([helper.make_node("ConstantOfShape", ["shape"], ["y"])], [], [huge]),
        "huge Expand": _model([helper.make_node("Expand", ["x", "shape"], ["y"])], _x([1]), [huge]),
        "huge input dims": _model([helper.make_node("Relu", ["x"], ["y"])], _x([2**62, 2**62])),
        "deep chain": _model([helper.make_node("Relu", ["x" if k == 0 else f"h{k - 1}"],
                                               ["y" if k == 2999 else f"h{k}"]) for k in range(3000)],
                             _x(["n", 4])),
        "cycle": _model([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                         helper.make_node("Identity", ["a"], ["y"])], _x([2])),
        "missing initializer": _model([helper.make_node("MatMul", ["x", "w"], ["y"])], _x([2, 3])),
    }
    outcomes = {}
    for name, model in cases.items():
        graph = harness.check(harness.onnx_model, model)
        outcomes[name] = "graph" if graph is not None else "llmc error"
    assert outcomes["cycle"] == outcomes["missing initializer"] == "llmc error"
    assert outcomes["deep chain"] == "graph"
    assert stats.executions == 6 and not stats.findings
