"""backends.fastmath: the vectorizable exp / erf / tanh / sigmoid against float64 references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tvm
from tvm import s_tir, te

from llmc.backends import fastmath
from llmc.backends.x86.target import host_target


def _run(fn, x: np.ndarray) -> np.ndarray:
    """Compile fn elementwise over x (vectorized by 16, as the schedules do) and run it."""
    n = x.size
    a = te.placeholder((n,), "float32", name="a")
    b = te.compute((n,), lambda i: fn(a[i]), name="b")
    sch = s_tir.Schedule(te.create_prim_func([a, b]))
    (i,) = sch.get_loops(sch.get_sblock("b"))
    sch.vectorize(sch.split(i, [None, 16])[1])
    lib = tvm.compile(sch.mod, tvm.target.Target(host_target(None)))
    out = tvm.runtime.tensor(np.zeros(n, np.float32))
    lib(tvm.runtime.tensor(x), out)
    return out.numpy()


def _grid(lo: float, hi: float) -> np.ndarray:
    x = np.linspace(lo, hi, 20000, dtype=np.float32)
    return np.concatenate([x, np.float32([0.0, -0.0, 1e-30, -1e-30])]).astype(np.float32)


def test_exp_relative_error():
    x = _grid(-86.5, 88.7)
    ref = np.exp(x.astype(np.float64))
    got = _run(fastmath.fast_exp, x)
    assert np.max(np.abs(got - ref) / ref) < 3e-7


def test_exp_special_values():
    x = np.float32([np.nan, np.inf, -np.inf, 100.0, -100.0, -3.4e38, 88.5] + [0.0] * 9)
    got = _run(fastmath.fast_exp, x)
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == 0.0 and got[3] == np.inf
    assert got[4] == 0.0 and got[5] == 0.0
    np.testing.assert_allclose(got[6], np.exp(np.float64(88.5)), rtol=1e-2)


@pytest.mark.parametrize("name,ref,lo,hi", [
    ("fast_erf", np.vectorize(math.erf), -6.0, 6.0),
    ("fast_tanh", np.tanh, -12.0, 12.0),
])
def test_odd_functions_absolute_error(name, ref, lo, hi):
    x = _grid(lo, hi)
    got = _run(getattr(fastmath, name), x)
    want = ref(x.astype(np.float64))
    assert np.max(np.abs(got - want)) < 5e-7
    assert np.all(np.abs(got) <= 1.0)
    special = _run(getattr(fastmath, name), np.float32([np.nan, np.inf, -np.inf] + [0.0] * 13))
    assert np.isnan(special[0]) and special[1] == 1.0 and special[2] == -1.0


def test_sigmoid_error_and_special_values():
    x = _grid(-100.0, 100.0)
    want = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    got = _run(fastmath.fast_sigmoid, x)
    assert np.max(np.abs(got - want)) < 3e-7
    assert np.max(np.abs(got - want)[want > 1e-30] / want[want > 1e-30]) < 1e-6
    special = _run(fastmath.fast_sigmoid, np.float32([np.nan, np.inf, -np.inf] + [0.0] * 13))
    assert np.isnan(special[0]) and special[1] == 1.0 and special[2] == 0.0 and special[3] == 0.5


def test_other_dtypes_keep_the_intrinsic():
    x = te.placeholder((4,), "float64", name="x")
    assert "exp" in str(fastmath.fast_exp(x[0])) and "erf" in str(fastmath.fast_erf(x[0]))
