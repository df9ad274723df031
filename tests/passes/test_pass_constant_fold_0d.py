"""Folding keeps 0-d values 0-d (np.ascontiguousarray would make them 1-d)."""
import numpy as np

from llmc.ir import Graph
from llmc.passes.manager import get_pass


def test_folded_scalar_stays_scalar():
    g = Graph()
    c = g.add_constant(np.array(16.0, np.float32), "c")
    (o,) = g.add_node("sqrt", [c])
    (t,) = g.add_node("transpose", [o], {"perm": []})
    x = g.add_input("x", "float32", [3])
    g.add_node("div", [x, t], outputs=["y"])
    g.set_outputs(["y"])
    out = get_pass("constant_fold")(g.copy())
    out.verify()
    assert all(arr.ndim == 0 for arr in out.constants.values())
