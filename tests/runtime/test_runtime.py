"""The runtime loads artifacts, validates inputs and matches the numpy reference."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import llmc
from llmc.errors import InputError
from llmc.interpreter import run_reference


def test_load_and_run_matches_reference_at_two_batch_sizes(mlp_artifact):
    graph, _, path = mlp_artifact
    model = llmc.load(path)
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)
        got = model.run(x)
        want = run_reference(graph, {"x": x})
        assert list(got) == ["y"]
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-4, atol=1e-4)


def test_positional_dict_and_keyword_inputs_agree(mlp_artifact):
    _, art, _ = mlp_artifact
    x = np.ones((2, 16), np.float32)
    a = art.run(x)["y"]
    b = art.run({"x": x})["y"]
    c = art.run(x=x)["y"]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("bad, message", [
    ({"z": np.ones((2, 16), np.float32)}, "unknown input name"),
    ({"x": np.ones((2, 16), np.float64)}, "dtype float64"),
    ({"x": np.ones((2, 15), np.float32)}, "axis 1 must be 16"),
    ({"x": np.ones((16,), np.float32)}, "rank 2"),
    ({}, "missing input 'x'"),
])
def test_wrong_inputs_raise_clear_errors(mlp_artifact, bad, message):
    _, art, _ = mlp_artifact
    with pytest.raises(InputError, match=message):
        art.run(bad)


def test_wrong_number_of_positional_inputs(mlp_artifact):
    _, art, _ = mlp_artifact
    x = np.ones((2, 16), np.float32)
    with pytest.raises(InputError, match="takes 1 inputs"):
        art.run(x, x)


def test_benchmark_reports_median(mlp_artifact):
    _, art, _ = mlp_artifact
    stats = art.benchmark(np.ones((4, 16), np.float32), repeat=5, warmup=1)
    assert stats["repeat"] == 5 and 0 < stats["min_ms"] <= stats["median_ms"] <= stats["max_ms"]


def test_runtime_imports_neither_torch_nor_onnx_nor_compiler(mlp_artifact):
    """An edge app has only TVM's runtime and numpy: block torch/onnx and load + run anyway."""
    _, _, path = mlp_artifact
    script = textwrap.dedent(f"""
        import sys, importlib.abc
        BLOCKED = ("torch", "onnx", "onnxruntime", "transformers", "sympy", "llmc.frontends",
                   "llmc.backends", "llmc.api", "llmc.pipeline", "llmc.ir")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                    raise ImportError("blocked import: " + name)
        sys.meta_path.insert(0, Block())
        import numpy as np
        import llmc.runtime
        m = llmc.runtime.load({str(path)!r})
        out = m.run(np.ones((3, 16), np.float32))
        assert out["y"].shape == (3, 8), out["y"].shape
        bad = sorted(n for n in sys.modules if any(n == b or n.startswith(b + ".") for b in BLOCKED))
        assert not bad, bad
        print("OK", len(sys.modules))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout
