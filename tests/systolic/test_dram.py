"""The ``scalesim`` DRAM model's event walk against a literal, row-by-row and word-by-word
transcription of SCALE-Sim 3.0's loops (double_buffered_scratchpad.service_memory_requests,
read_buffer.service_reads / new_prefetch, write_buffer.service_writes / empty_drain_buf).

Why: the model skips every row where nothing happens; this checks the skipping (binary searches
on write templates, precomputed misses) on many small shapes in well under a second each,
without SCALE-Sim. test_scalesim.py checks the same model against SCALE-Sim itself.
"""
import math

import numpy as np
import pytest

from llmc.backends.systolic.sim import dram
from llmc.backends.systolic.sim.config import SystolicConfig
from llmc.backends.systolic.sim.cycles import gemm_stats, mapping


def _per_row(segments, rows):
    first = np.full(rows, -1, np.int64)
    last = np.full(rows, -1, np.int64)
    if segments is None:
        return first, last
    for base, rr, f, l in segments:
        first[base + rr] = f
        last[base + rr] = l
    return first, last


def _literal(m, k, n, cfg):
    """SCALE-Sim's loops, one row and one word at a time: (total, stalls)."""
    mp = mapping(m, k, n, cfg)
    rows = mp.folds * mp.per_fold
    bw = int(cfg.dram_bytes_per_cycle)
    ifm, fil, wr = dram.demand(m, k, n, cfg, mp.per_fold)
    reads = []
    for (segs, valid, _pad), kib in ((ifm, cfg.ifmap_sram_kib), (fil, cfg.filter_sram_kib)):
        e = int(kib * 1024)
        active = math.ceil(e * 0.5)
        eps = math.ceil(e / 100)
        nl = valid // eps + 1
        a = min(math.ceil(active / eps), nl)
        p = min(math.ceil((e - active) / eps), nl - a)
        f, l = _per_row(segs, rows)
        reads.append(dict(f=f, l=l, eps=eps, nl=nl, a=a, p=p, s=0, last=-1,
                          step=math.ceil((e - active) / bw) + 1))
    e_o = int(cfg.ofmap_sram_kib * 1024)
    drain = e_o - math.ceil(e_o * 0.5)
    wb = dict(free=e_o, drain_end=0, line_idx=0, lines=[], dptr=0)
    stalls = 0
    out = 0
    for i in range(rows):
        cyc = i + stalls
        row_st = []
        for rb in reads:
            off = 1
            if rb["f"][i] >= 0:
                for pos in range(rb["f"][i], rb["l"][i] + 1):
                    line = pos // rb["eps"]
                    while (line - rb["s"]) % rb["nl"] >= rb["a"]:
                        rb["s"] = (rb["s"] + rb["p"]) % rb["nl"]
                        rb["last"] += rb["step"]
                        pst = rb["last"] - (cyc + off)
                        off += pst
                        if pst > 0:
                            off += pst
            row_st.append(off - 1)
        cur = cyc
        for _ in range(wr.w(i)):
            wb["free"] -= 1
            wb["line_idx"] += 1
            if wb["line_idx"] == bw:
                wb["lines"].append(bw)
                wb["line_idx"] = 0
            if cur < wb["drain_end"]:
                if wb["free"] <= 0:
                    cur = wb["drain_end"]
            elif wb["free"] < e_o - drain:
                if wb["line_idx"]:
                    wb["lines"].append(wb["line_idx"])
                    wb["line_idx"] = 0
                take = wb["lines"][wb["dptr"]:wb["dptr"] + math.ceil(drain / bw)]
                wb["dptr"] += len(take)
                wb["free"] += len(take) * bw - (bw - take[-1])
                wb["drain_end"] = cur + len(take) - 1
        row_st.append(cur - cyc)
        out = cur
        stalls += int(max(row_st))
    return out, stalls


CASES = [(7, 9, 5, 4, 3), (10, 20, 13, 4, 4), (30, 40, 33, 4, 4), (1, 60, 50, 4, 4),
         (24, 48, 16, 8, 4)]


@pytest.mark.parametrize("df", ["ws", "os", "is"])
@pytest.mark.parametrize("bw", [1, 3, 16])
def test_event_walk_equals_row_by_row_transcription(df, bw):
    stalled = 0
    for m, k, n, r, c in CASES:
        cfg = SystolicConfig(rows=r, cols=c, dataflow=df, ifmap_sram_kib=0.5,
                             filter_sram_kib=0.75, ofmap_sram_kib=0.25,
                             dram_bytes_per_cycle=bw)
        s = gemm_stats(m, k, n, cfg)
        total, stalls = _literal(m, k, n, cfg)
        assert s.compute_cycles + s.stall_cycles == total, (m, k, n, r, c)
        d = dram.scalesim_memory(m, k, n, cfg, s.folds, mapping(m, k, n, cfg).per_fold)
        assert d.stall_cycles == stalls, (m, k, n, r, c)
        stalled += stalls > 0
    assert bw == 16 or stalled >= 2        # the small SRAMs do miss and fill up


def test_writes_lookup_matches_the_per_row_counts():
    w = dram._Writes(5, 3, np.array([4, 4, 2]), np.array([0, 1, 0]), 12)
    per_row = np.concatenate([dram._write_template(5, 3, c, lo, 12)
                              for c, lo in ((4, 0), (4, 1), (2, 0))])
    cum = np.cumsum(per_row)
    assert w.total == cum[-1]
    for row in range(len(per_row)):
        assert w.w(row) == per_row[row]
        assert w.before(row) == cum[row] - per_row[row]
    for v in range(1, int(cum[-1]) + 2):
        assert w.first_reaching(v) == int(np.searchsorted(cum, v, side="left"))
