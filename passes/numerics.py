"""Numeric equivalence checks: the evidence that a pass did not change what a graph computes."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from llmc import dims as D
from llmc.dtypes import is_float, to_numpy
from llmc.ir import Graph


def random_inputs(graph: Graph, bindings: Mapping[str, int] | None = None, seed: int = 0,
                  default_dim: int = 2) -> dict[str, np.ndarray]:
    """Seeded random inputs for ``graph``: floats ~ N(0,1), ints in [0, 2), bools at random.

    Small ints keep index inputs (token ids, masks) in range for any table; symbols default
    to ``default_dim`` (2, not 1, so broadcasting mistakes show up).
    """
    rng = np.random.default_rng(seed)
    bind = {s: default_dim for s in graph.symbols()}
    bind.update(bindings or {})
    out = {}
    for name in graph.inputs:
        ty = graph.types[name]
        shape = tuple(D.evaluate(d, bind) for d in ty.shape)
        dt = to_numpy(ty.dtype)
        if is_float(ty.dtype):
            out[name] = rng.standard_normal(shape).astype(dt)
        elif ty.dtype == "bool":
            out[name] = rng.random(shape) < 0.5
        else:
            out[name] = rng.integers(0, 2, size=shape).astype(dt)
    return out


def compare_outputs(expected: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                    rtol: float = 1e-5, atol: float = 1e-6) -> str:
    """'' when every output matches (dtype, shape, values within tolerance), else why not."""
    for name, want in expected.items():
        if name not in got:
            return f"output {name!r} missing"
        have = np.asarray(got[name])
        want = np.asarray(want)
        if have.dtype != want.dtype or have.shape != want.shape:
            return (f"output {name!r} is {have.dtype}{list(have.shape)}, expected "
                    f"{want.dtype}{list(want.shape)}")
        if want.dtype.kind in "fc":
            w = want.astype(np.float64)
            h = have.astype(np.float64)
            if not np.allclose(h, w, rtol=rtol, atol=atol, equal_nan=True):
                err = np.nanmax(np.abs(h - w))
                return f"output {name!r} differs (max abs error {err:.3g})"
        elif not np.array_equal(have, want):
            return f"output {name!r} differs"
    return ""
