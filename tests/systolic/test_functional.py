"""The array's arithmetic equals a numpy int8/int32 reference bit for bit."""
import numpy as np
import pytest

from llmc.backends.systolic.sim.config import SystolicConfig
from llmc.backends.systolic.sim.functional import gemm_bf16, gemm_int8
from llmc.backends.systolic.sim.simulator import Simulator


def _ref_int32(a, b):
    return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)


@pytest.mark.parametrize("df", ["ws", "os", "is"])
@pytest.mark.parametrize("shape", [(1, 768, 64), (100, 300, 77), (7, 5, 3), (33, 2100, 9)])
def test_int8_exact(df, shape):
    m, k, n = shape
    rng = np.random.default_rng(m * k + n)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    a[0, :] = -128   # extremes: largest products
    b[:, 0] = -128
    got = gemm_int8(a, b, SystolicConfig(rows=8, cols=8, dataflow=df))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, _ref_int32(a, b))


def test_int32_accumulator_wraps():
    # 2^17+ products of 2^14 overflow int32: the accumulator wraps modulo 2^32 like hardware
    k = 140_000
    a = np.full((1, k), -128, np.int8)
    b = np.full((k, 2), -128, np.int8)
    got = gemm_int8(a, b, SystolicConfig(rows=16, cols=16))
    want = np.int64(k) * 16384
    assert want > np.iinfo(np.int32).max
    assert got[0, 0] == np.array(want).astype(np.int32)


@pytest.mark.parametrize("df", ["ws", "os"])
def test_bf16_fold_order(df):
    import ml_dtypes

    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 37)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((37, 6)).astype(ml_dtypes.bfloat16)
    cfg = SystolicConfig(rows=8, cols=4, dataflow=df, precision="bf16")
    got = gemm_bf16(a, b, cfg)
    # scalar model of the array: each PE adds one product to the fp32 partial sum it passes on
    step = 37 if df == "os" else 8
    want = np.zeros((5, 6), np.float32)
    for i in range(5):
        for j in range(6):
            acc = np.float32(0)
            for f0 in range(0, 37, step):
                ps = np.float32(0)
                for kk in range(f0, min(f0 + step, 37)):
                    ps = np.float32(ps + np.float32(a[i, kk]) * np.float32(b[kk, j]))
                acc = np.float32(acc + ps)
            want[i, j] = acc
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b.astype(np.float64), rtol=2e-2,
                               atol=1e-2)


def test_simulator_records_each_call():
    sim = Simulator("edge")
    a = np.ones((4, 20), np.int8)
    b = np.ones((20, 3), np.int8)
    y = sim.gemm(a, b, "l0")
    sim.gemm(a, b, "l1")
    np.testing.assert_array_equal(y, np.full((4, 3), 20, np.int32))
    assert [r.name for r in sim.records] == ["l0", "l1"]
    assert sim.records[0].macs == 4 * 20 * 3
