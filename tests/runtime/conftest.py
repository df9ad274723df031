"""A small compiled artifact shared by the runtime and CLI tests (built once per session)."""
from __future__ import annotations

import numpy as np
import pytest

from llmc import dims
from llmc.ir import Graph


def mlp_graph() -> Graph:
    """x[batch, 16] -> relu(x @ w1 + b1) * 2 @ w2: a symbolic batch and real weights."""
    rng = np.random.default_rng(0)
    g = Graph("tiny_mlp")
    x = g.add_input("x", "float32", [dims.sym("batch"), 16])
    w1 = g.add_constant(rng.standard_normal((16, 32)).astype(np.float32), "w1")
    b1 = g.add_constant(rng.standard_normal((32,)).astype(np.float32), "b1")
    w2 = g.add_constant(rng.standard_normal((32, 8)).astype(np.float32), "w2")
    two = g.add_constant(np.array(2.0, np.float32), "two")
    (h,) = g.add_node("matmul", [x, w1])
    (h,) = g.add_node("add", [h, b1])
    (h,) = g.add_node("relu", [h])
    (h,) = g.add_node("mul", [h, two])
    g.add_node("matmul", [h, w2], outputs=["y"])
    g.set_outputs(["y"])
    return g


@pytest.fixture(scope="session")
def mlp_artifact(tmp_path_factory):
    import llmc

    graph = mlp_graph()
    art = llmc.compile(graph, target="x86")
    path = tmp_path_factory.mktemp("art") / "mlp.llmc"
    art.save(path)
    return graph, art, path
