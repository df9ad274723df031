"""llmc's cycle model against SCALE-Sim 3.0 itself (run in .venv-scalesim as a subprocess).

The venv comes from scripts/setup_scalesim.sh (CI runs it); a missing venv fails the test with
that instruction rather than skipping it.
"""
import pytest

from llmc.backends.systolic.sim.validate import Case, compare

CASES = [Case(1, 40, 24, 8, 8, "ws"), Case(1, 40, 24, 8, 8, "os"), Case(1, 40, 24, 8, 8, "is"),
         Case(20, 30, 17, 8, 4, "ws"), Case(20, 30, 17, 8, 4, "os"), Case(20, 30, 17, 8, 4, "is"),
         Case(10, 30, 7, 4, 4, "is")]


@pytest.mark.slow
def test_cycles_and_sram_counts_equal_scalesim():
    rows = compare(CASES)
    assert len(rows) == len(CASES)
    for r in rows:
        assert r["llmc_cycles"] == r["scalesim_cycles"], r
        assert r["scalesim_stall_cycles"] == 0 and r["llmc_total_cycles"] == r["llmc_cycles"], r
        assert r["llmc_ifmap_reads"] == r["scalesim_ifmap_reads"], r
        assert r["llmc_filter_reads"] == r["scalesim_filter_reads"], r
        assert r["llmc_ofmap_writes"] == r["scalesim_ofmap_writes"], r
        assert r["llmc_mapping_eff"] == pytest.approx(r["scalesim_mapping_eff"], abs=1e-3), r
        assert r["llmc_util"] == pytest.approx(r["scalesim_util"], abs=1e-3), r
