"""`llmc tune` (backends/x86/tune.py): records written, picked up by compile only when faster,
ignored for another target or workload, and the search stops at its budget."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from llmc.backends.x86 import build, host_target, run
from llmc.backends.x86.tune import SIDECAR, parse_budget, target_key, tune_model, tuned_wins
from llmc.errors import InputError
from llmc.ir import Graph

M, K, N = 16, 64, 128


def _graph(w: np.ndarray, m: int = M) -> Graph:
    g = Graph("mm")
    x = g.add_input("x", "float32", [m, w.shape[0]])
    g.set_outputs(g.add_node("matmul", [x, g.add_constant(w, "w")]))
    return g


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One short tuning run shared by the tests (a few trials of a tiny matmul)."""
    w = np.random.default_rng(0).standard_normal((K, N)).astype(np.float32)
    db = str(tmp_path_factory.mktemp("tune") / "db")
    res = tune_model(_graph(w), db, budget="60s", trials=6)
    return w, db, res


def _sidecar(db: str) -> tuple[str, dict]:
    path = os.path.join(db, target_key(host_target()), SIDECAR)
    with open(path) as fh:
        return path, json.load(fh)


def _set_times(db: str, default_us: float, tuned_us: float) -> None:
    path, data = _sidecar(db)
    for rec in data.values():
        rec["default_us"], rec["tuned_us"] = default_us, tuned_us
    with open(path, "w") as fh:
        json.dump(data, fh)


def test_tune_writes_database(tuned):
    _, db, res = tuned
    tdir = os.path.join(db, target_key(host_target()))
    assert os.path.getsize(os.path.join(tdir, "database_tuning_record.json")) > 0
    assert os.path.getsize(os.path.join(tdir, "database_workload.json")) > 0
    _, data = _sidecar(db)
    assert len(data) == 1 and len(res.rows) == 1
    rec = next(iter(data.values()))
    assert rec["kind"] == "matmul_packed" and rec["trials"] >= 1
    assert rec["default_us"] > 0 and rec["tuned_us"] > 0  # both measured at tune time
    assert rec["use_tuned"] == tuned_wins(rec["default_us"], rec["tuned_us"])


def test_compile_uses_tuned_record_when_faster(tuned):
    w, db, _ = tuned
    x = np.random.default_rng(1).standard_normal((M, K)).astype(np.float32)
    _set_times(db, default_us=100.0, tuned_us=50.0)
    res = build(_graph(w), tuning_db=db)
    (how,) = res.schedules.values()
    assert how.startswith("tuned")
    got = run(res, {"x": x})[res.output_names[0]]
    np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-4)


def test_compile_keeps_default_when_tuned_is_slower(tuned):
    w, db, _ = tuned
    _set_times(db, default_us=50.0, tuned_us=100.0)
    res = build(_graph(w), tuning_db=db)
    assert list(res.schedules.values()) == ["matmul_packed"]


def test_other_target_and_workload_ignored(tuned):
    w, db, _ = tuned
    _set_times(db, default_us=100.0, tuned_us=50.0)
    # another CPU: its own database directory, empty
    res = build(_graph(w), mcpu="skylake-avx512", tuning_db=db)
    assert not any(h.startswith("tuned") for h in res.schedules.values())
    # another workload (different M) on this CPU: no record for it
    x = np.random.default_rng(2).standard_normal((24, K)).astype(np.float32)
    res = build(_graph(w, m=24), tuning_db=db)
    assert not any(h.startswith("tuned") for h in res.schedules.values())
    np.testing.assert_allclose(run(res, {"x": x})[res.output_names[0]], x @ w,
                               rtol=1e-4, atol=1e-4)


def test_budget_stops_tuning(tmp_path):
    w = np.random.default_rng(3).standard_normal((K, N)).astype(np.float32)
    # no trial limit: only the (tiny) budget ends the search, possibly before any trial
    res = tune_model(_graph(w), str(tmp_path / "db"), budget="1s")
    (row,) = res.rows
    assert row["default_us"] > 0
    assert (row["tuned_us"] is None) == (row["trials"] == 0)
    assert row["use_tuned"] == tuned_wins(row["default_us"], row["tuned_us"])


def test_parse_budget_and_missing_db(tmp_path):
    assert parse_budget("10m") == 600 and parse_budget("90s") == 90 and parse_budget(5) == 5
    with pytest.raises(InputError):
        parse_budget("ten minutes")
    w = np.ones((K, N), np.float32)
    with pytest.raises(InputError, match="no such directory"):
        build(_graph(w), tuning_db=str(tmp_path / "absent"))


def test_cli_tune_then_compile(tmp_path, capsys):
    """`llmc tune` on an ONNX file with a symbolic batch fixed by --input-shape, then
    `llmc compile --tuning-db` with the same shape: the artifact matches ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from llmc.cli import main
    from llmc.runtime import load

    w = np.random.default_rng(4).standard_normal((K, N)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N])],
        [numpy_helper.from_array(w, "W")])
    model = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    db, art = tmp_path / "db", tmp_path / "mm.llmc"
    shape = ["--input-shape", f"x={M},{K}"]
    assert main(["tune", str(model), "--budget", "30s", "--trials", "2", "--db", str(db), *shape]) == 0
    assert "trials in" in capsys.readouterr().out
    assert main(["compile", str(model), "--tuning-db", str(db), "-o", str(art), *shape]) == 0
    x = np.random.default_rng(5).standard_normal((M, K)).astype(np.float32)
    ref = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(load(str(art)).run({"x": x})["y"], ref, rtol=1e-4, atol=1e-4)
