"""Helpers for the pass tests: run passes with the verifier and the numeric oracle."""
from __future__ import annotations

from collections import Counter
from typing import Mapping, Sequence

import numpy as np

from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.passes import run_passes
from llmc.passes.numerics import compare_outputs, random_inputs


def ops(graph: Graph) -> Counter:
    """op name -> count."""
    return Counter(n.op for n in graph.nodes)


def body_ops(graph: Graph) -> Counter:
    """Op counts with fused groups opened: fusion moves ops, it does not remove them."""
    return Counter(b.op for n in graph.nodes
                   for b in (n.attrs["body"].nodes if n.op == "fused" else [n]))


def check(graph: Graph, passes: Sequence[str] | None = None, level: str | None = None,
          inputs: Mapping[str, np.ndarray] | None = None, rtol: float = 1e-5,
          atol: float = 1e-6) -> Graph:
    """Run passes (verifier + numeric check after each) and compare the end result too."""
    graph.verify()
    inputs = dict(inputs) if inputs is not None else random_inputs(graph, seed=1)
    before = run_reference(graph, inputs)
    out, report = run_passes(graph, level=level or "O0", passes=passes, verify=True,
                             check_numerics=inputs, rtol=rtol, atol=atol)
    assert out.inputs == graph.inputs and out.outputs == graph.outputs
    after = run_reference(out, inputs)
    problem = compare_outputs(before, after, rtol=rtol, atol=atol)
    assert not problem, problem
    assert len(report.rows) == len(passes) if passes is not None else True
    return out


def const(g: Graph, value, dtype=np.float32, name: str = "c") -> str:
    return g.add_constant(np.asarray(value, dtype=dtype), name)
