"""The cycle model: closed forms against a fold-by-fold enumeration, DRAM stalls, configs."""
import json

import numpy as np
import pytest

from llmc.backends.systolic.sim.config import EDGE, TPU_LIKE, SystolicConfig, load_config
from llmc.backends.systolic.sim.cycles import gemm_stats
from llmc.errors import InputError


def _enumerate(m, k, n, r, c, df):
    """Fold-by-fold walk (SCALE-Sim's loop structure): cycles, reads/writes, mapping eff."""
    sr, sc, t = {"ws": (k, n, m), "os": (m, n, k), "is": (k, m, n)}[df]
    cyc, ifr, flr, ofw, eff = 0, 0, 0, 0, []
    for c0 in range(0, sc, c):
        for r0 in range(0, sr, r):
            ru, cu = min(r, sr - r0), min(c, sc - c0)
            cyc += (2 * r if df != "os" else r) + c + t - 2
            eff.append(ru * cu / (r * c))
            if df == "ws":     # stream T rows of A over ru, weights ru x cu, outputs T x cu
                ifr, flr, ofw = ifr + t * ru, flr + ru * cu, ofw + t * cu
            elif df == "os":   # stream A rows (ru x K) and B cols (K x cu); outputs ru x cu
                ifr, flr, ofw = ifr + ru * t, flr + cu * t, ofw + ru * cu + r + c
            else:              # A tile ru x cu stationary, B streamed ru x T, outputs cu x T
                ifr, flr, ofw = ifr + ru * cu, flr + ru * t, ofw + cu * t
    return cyc - 1, ifr, flr, ofw, float(np.mean(eff))


@pytest.mark.parametrize("df", ["ws", "os", "is"])
@pytest.mark.parametrize("shape", [(1, 768, 3072), (128, 3072, 768), (100, 300, 77), (3, 5, 2)])
@pytest.mark.parametrize("arr", [(8, 8), (32, 32), (16, 4)])
def test_closed_form_matches_enumeration(df, shape, arr):
    m, k, n = shape
    s = gemm_stats(m, k, n, SystolicConfig(rows=arr[0], cols=arr[1], dataflow=df))
    cyc, ifr, flr, ofw, eff = _enumerate(m, k, n, *arr, df)
    assert (s.compute_cycles, s.ifmap_sram_reads, s.filter_sram_reads, s.ofmap_sram_writes) == \
        (cyc, ifr, flr, ofw)
    assert s.mapping_efficiency == pytest.approx(eff)


def test_fold_model_stalls_appear_when_bandwidth_is_short():
    big = dict(ifmap_sram_kib=4096, filter_sram_kib=4096, ofmap_sram_kib=4096,
               accumulator_kib=4096, dram_model="fold")
    fast = gemm_stats(128, 768, 768, SystolicConfig(rows=32, cols=32, dram_bytes_per_cycle=1e6,
                                                    **big))
    slow = gemm_stats(128, 768, 768, SystolicConfig(rows=32, cols=32, dram_bytes_per_cycle=1.0,
                                                    **big))
    assert fast.stall_cycles == 0
    assert slow.stall_cycles > 0
    assert slow.compute_cycles == fast.compute_cycles
    # every weight byte crosses DRAM once: a fold's weight tile (1 KiB at 1 B/cycle) takes
    # longer than its compute (2R + C + T - 2 = 222 cycles)
    assert slow.dram_read_bytes == fast.dram_read_bytes == 128 * 768 + 768 * 768
    assert slow.stall_cycles >= (slow.folds - 1) * (1024 - 222)


def test_fold_model_small_buffers_refetch():
    roomy = gemm_stats(128, 768, 768, SystolicConfig(rows=32, cols=32, ifmap_sram_kib=1024,
                                                     dram_model="fold"))
    tight = gemm_stats(128, 768, 768, SystolicConfig(rows=32, cols=32, ifmap_sram_kib=64,
                                                     dram_model="fold"))
    assert tight.dram_read_bytes > roomy.dram_read_bytes
    assert tight.energy_pj > roomy.energy_pj


@pytest.mark.parametrize("df", ["ws", "os", "is"])
def test_scalesim_model_is_stall_free_when_everything_fits(df):
    """Operands that fit in the active halves are loaded once before cycle 0 and a write
    buffer that never fills never stalls: total = compute, stalls = 0; the prologue is the
    first fill (its lines at the port's bandwidth)."""
    cfg = SystolicConfig(rows=8, cols=8, dataflow=df, ifmap_sram_kib=64, filter_sram_kib=64,
                         ofmap_sram_kib=256, dram_bytes_per_cycle=16)
    s = gemm_stats(20, 30, 17, cfg)
    assert s.stall_cycles == 0
    padded = {"ws": (20 * 8 * 4, 30 * 8 * 3), "os": (30 * 8 * 3, 30 * 8 * 3),
              "is": (30 * 8 * 3, 17 * 8 * 4)}[df]
    assert s.prologue_cycles == max(-(-p // 16) for p in padded)
    assert s.dram_read_bytes == sum(-(-p // 16) * 16 for p in padded)


def test_scalesim_model_streams_weights_at_the_port_bandwidth():
    """A decode GEMV whose weights exceed the filter SRAM is DRAM-bound: the weights cross the
    filter port at B words per cycle, so the total cannot be below K*N/B."""
    for bw in (1, 4, 16):
        cfg = SystolicConfig(rows=32, cols=32, dataflow="os", ifmap_sram_kib=64,
                             filter_sram_kib=64, ofmap_sram_kib=64, dram_bytes_per_cycle=bw)
        s = gemm_stats(1, 768, 768, cfg)
        assert s.compute_cycles + s.stall_cycles >= 768 * 768 / bw
        assert s.dram_read_bytes >= 768 * 768


def test_miss_stall_closed_form_matches_scalesims_loop():
    """SCALE-Sim's per-move loop (read_buffer.service_reads) against the O(1) form."""
    from llmc.backends.systolic.sim.dram import _miss_stall
    rng = np.random.default_rng(0)
    for _ in range(500):
        last, step, k, cyc = (int(rng.integers(-50, 3000)), int(rng.integers(2, 300)),
                              int(rng.integers(1, 9)), int(rng.integers(0, 3000)))
        off, pf = 1, last
        for _ in range(k):
            pf += step
            p = pf - (cyc + off)
            off += p
            if p > 0:
                off += p
        assert _miss_stall(last, step, k, cyc) == off - 1


def test_dram_model_is_checked():
    with pytest.raises(InputError, match="dram_model"):
        SystolicConfig(dram_model="magic")


def test_presets_and_json(tmp_path):
    assert TPU_LIKE.rows == 256 and TPU_LIKE.clock_mhz == 700
    assert TPU_LIKE.peak_ops_per_s == pytest.approx(91.75e12, rel=1e-3)   # "92 TOPS"
    assert EDGE.rows == 16
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"base": "edge", "rows": 8, "dataflow": "os"}))
    cfg = load_config(str(p))
    assert (cfg.rows, cfg.cols, cfg.dataflow, cfg.name) == (8, 16, "os", "edge")
    with pytest.raises(InputError, match="unknown field"):
        load_config({"rowz": 3})
    with pytest.raises(InputError, match="dataflow"):
        load_config({"dataflow": "xs"})
    with pytest.raises(InputError, match="no such JSON"):
        load_config("nope.json")
