"""The `llmc` command line: compile / run / inspect, one-line errors, exit codes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from llmc.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> str:
    """y = softmax(x @ W + b) with a symbolic batch: small, but a real ONNX file."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["z"], name="bias"),
             helper.make_node("Softmax", ["z"], ["y"], name="sm", axis=-1)]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("cli") / "small.onnx"
    onnx.save(model, path)
    return str(path)


def test_compile_run_inspect_roundtrip(small_onnx, tmp_path, capsys):
    import onnxruntime as ort

    art = tmp_path / "small.llmc"
    assert main(["compile", small_onnx, "--target", "x86", "-o", str(art)]) == 0
    assert art.exists()
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", str(art), "--inputs", str(tmp_path / "in.npz"), "--output", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as out:
        got = out["y"]
    want = ort.InferenceSession(small_onnx).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    assert main(["inspect", str(art)]) == 0
    assert '"name": "x"' in capsys.readouterr().out
    assert main(["inspect", small_onnx]) == 0
    text = capsys.readouterr().out
    assert "matmul(" in text and "softmax(" in text and "batch" in text


def test_errors_are_one_line_without_traceback(small_onnx, tmp_path, capsys):
    art = tmp_path / "small.llmc"
    assert main(["compile", small_onnx, "-o", str(art)]) == 0
    capsys.readouterr()
    np.savez(tmp_path / "bad.npz", x=np.ones((3, 7), np.float32))
    assert main(["run", str(art), "--inputs", str(tmp_path / "bad.npz")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("llmc: error:") and "axis 1 must be 8" in err and "\n" not in err
    assert main(["run", str(tmp_path / "missing.llmc"), "--inputs", str(tmp_path / "bad.npz")]) == 1
    assert "no such file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x01garbage that is not protobuf" * 3)
    assert main(["compile", str(garbage)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress line
    assert err.startswith("llmc: error:") and "garbage.onnx" in err and "Traceback" not in err


def test_unsupported_op_names_op_and_node(tmp_path, capsys):
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"], name="nms_1")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 4]),
                                            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 4])],
                              [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3])])
    path = tmp_path / "nms.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["compile", str(path)]) == 1
    err = capsys.readouterr().err
    assert "NonMaxSuppression" in err and "nms_1" in err


def test_console_script_debug_shows_traceback(tmp_path):
    missing = tmp_path / "nope.llmc"
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "llmc.cli", "run", str(missing), "--inputs", "x.npz"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "no such file" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "llmc.cli", "--debug", "run", str(missing), "--inputs", "x.npz"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_opt_levels_pass_control_and_report(small_onnx, tmp_path, capsys):
    art = tmp_path / "o.llmc"
    assert main(["compile", small_onnx, "-O0", "-o", str(art)]) == 0
    assert main(["compile", small_onnx, "-o", str(art), "--passes", "constant_fold,dce",
                 "--disable-pass", "dce", "--report", "--plan-dims", "batch=4"]) == 0
    out = capsys.readouterr().out
    assert "constant_fold" in out and "dce " not in out and "memory plan: arena" in out
    assert "'batch': 4" in out
    assert main(["compile", small_onnx, "-o", str(art), "--passes", "no_such_pass"]) == 1
    assert "unknown pass 'no_such_pass'" in capsys.readouterr().err


def test_compile_stages_and_run_pipeline_locally(small_onnx, tmp_path, capsys):
    import onnxruntime as ort

    out_dir = tmp_path / "stages"
    assert main(["compile", small_onnx, "--stages", "2", "-o", str(out_dir), "--plan-dims", "batch=4"]) == 0
    assert "2 stages" in capsys.readouterr().out
    x = np.random.default_rng(2).standard_normal((4, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert main(["run", str(out_dir / "pipeline.json"), "--inputs", str(tmp_path / "in.npz"),
                 "--output", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as out:
        got = out["y"]
    want = ort.InferenceSession(small_onnx).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_inspect_draws_optimized_graph(tmp_path, capsys):
    model = os.path.join(REPO, "examples", "models", "tiny_bert.onnx")
    dot = tmp_path / "g.dot"
    assert main(["inspect", model, "--graph", str(dot)]) == 0
    text = dot.read_text()
    assert text.startswith("digraph") and "cluster" in text and "attention" in text
    assert main(["inspect", model, "-O", "O3"]) == 0
    assert "fused(" in capsys.readouterr().out


def test_int8_compile_with_calibration_and_accuracy_report(tmp_path, capsys):
    """W8A8 on a small MLP from the command line: calibrate, lower, report, run."""
    import json

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 128)).astype(np.float32) * 0.1, "W1")
    w2 = numpy_helper.from_array(rng.standard_normal((128, 32)).astype(np.float32) * 0.1, "W2")
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], [w1, w2])
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((4, 8, 64)).astype(np.float32))
    art = tmp_path / "mlp_int8.llmc"
    assert main(["compile", str(path), "-o", str(art), "--precision", "int8", "--calib", str(tmp_path / "calib.npz"),
                 "--accuracy-report", str(tmp_path / "acc.json")]) == 0
    report = json.loads((tmp_path / "acc.json").read_text())
    assert "cosine" in json.dumps(report)
    import llmc
    from llmc.frontends.onnx import import_onnx
    from llmc.interpreter import run_reference

    m = llmc.load(art)
    assert m.manifest["precision"]["mode"] == "int8"
    x = rng.standard_normal((8, 64)).astype(np.float32)
    got, want = m.run(x)["y"], run_reference(import_onnx(str(path)), {"x": x})["y"]
    cos = float(np.dot(got.ravel(), want.ravel()) / np.linalg.norm(got) / np.linalg.norm(want))
    assert cos > 0.99, cos
    assert main(["compile", str(path), "-o", str(art), "--precision", "int8"]) == 1
    assert "calib" in capsys.readouterr().err


def test_systolic_compile_run_profile_and_dse(small_onnx, tmp_path, capsys):
    """--target systolic from the command line: a fresh process-level load, --profile, dse."""
    art = tmp_path / "small_sys.llmc"
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((2, 4, 8)).astype(np.float32))
    assert main(["compile", small_onnx, "--target", "systolic", "--systolic-config", "edge",
                 "--calib", str(tmp_path / "calib.npz"), "-o", str(art)]) == 0
    np.savez(tmp_path / "in.npz", x=rng.standard_normal((4, 8)).astype(np.float32))
    capsys.readouterr()
    assert main(["run", str(art), "--inputs", str(tmp_path / "in.npz"), "--profile",
                 "--report", str(tmp_path / "prof.json")]) == 0
    out = capsys.readouterr().out
    assert "cycles" in out.lower() and (tmp_path / "prof.json").exists()
    assert main(["dse", small_onnx, "--arrays", "8x8,16x16", "--sram", "64K", "--plan-dims", "batch=4"]) == 0
    assert "16x16" in capsys.readouterr().out
