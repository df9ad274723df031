"""SCALE-Sim 3.0's memory system (USER bandwidth mode), reproduced event by event.

Why: "total cycles with limited DRAM bandwidth" must agree with SCALE-Sim, whose figure comes
from its double-buffered scratchpad (scalesim/memory/double_buffered_scratchpad_mem.py,
read_buffer.py, read_port.py, write_buffer.py, write_port.py). This module walks the same state
machines, but only at the rows (cycles) where something happens: a read buffer's window has to
move (a prefetch) or the write buffer starts a drain or fills up. The per-row demand is built
with numpy from the fold structure (closed forms of SCALE-Sim's demand and prefetch matrices),
so a layer costs one vectorized pass over its rows plus one Python step per buffer fill.

SCALE-Sim's rules, as its code runs them (words of ``word_size`` = 1 element each):

* The compute model turns a layer into one demand row per cycle (``folds * per_fold`` rows);
  row i of ifmap / filter / ofmap lists the addresses read or written at cycle i (before stalls).
* Read buffer (ifmap, filter), E words, ``active = ceil(E/2)``, ``prefetch = E - active``. The
  operand's *prefetch order* (per dataflow: tiles stacked fold by fold, some read along
  anti-diagonals, padding dropped) is cut into "lines" of ``eps = ceil(E / 100)`` words; the
  active window holds ``A = ceil(active/eps)`` lines and, on a miss, moves forward (modulo the
  line count) by ``P = ceil(prefetch/eps)`` lines. If the operand has at most A lines it is
  loaded once before cycle 0 and never misses. Each move is one DRAM prefetch of
  ``nl = ceil(prefetch / bw)`` request lines issued back to back right after the previous one
  finished (not when the miss happens): it completes at ``L += nl + 1`` (read port latency 1;
  the initial fill ends at L = -1). At a miss in row i (cycle c) each move adds
  ``p = L - (c + offset)`` to the row's offset (starting at the hit latency 1) and adds p
  *again* if p > 0 (SCALE-Sim's ``offset += p; if p > 0: offset += p``); the operand's stall
  for the row is ``offset - 1`` (negative when the data arrived long ago).
* Write buffer (ofmap), E words, ``drain = E - ceil(E/2)``: every written word takes a slot;
  when no drain is running (cycle >= drain_end) and more than ``drain`` words are held, the
  buffer flushes its partial line and drains ``ceil(drain / bw)`` lines of bw words (or what
  it holds) at one line per cycle starting now; the slots are freed when the drain *starts*.
  A word that finds no free slot while a drain runs stalls the row until the drain's end.
* Row stall = max(ifmap, filter, ofmap stall) (>= 0: the ofmap's is never negative), carried
  into every later row's cycle. "Total Cycles" = the last row's ofmap service cycle
  = rows - 1 + stalls; "Stall Cycles" = the sum of row stalls. The first fill and the final
  drain are outside both (its "Total Cycles (incl. prefetch)" adds them).

SCALE-Sim's USER mode takes the ifmap and filter DRAM bandwidths from ``IfmapSRAMBankBandwidth``
and ``FilterSRAMBankBandwidth`` of its [layout] section, not from ``Bandwidth`` (which only sets
the ofmap's); each operand has its own port.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SystolicConfig


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class DramResult:
    """What the memory system adds to a layer (cycles; traffic in words)."""

    stall_cycles: int
    total_cycles: int          # SCALE-Sim's "Total Cycles": compute rows - 1 + stalls
    prologue_cycles: int       # the first fill of the read buffers (before cycle 0)
    epilogue_cycles: int       # last DRAM write after the last row (the final drain)
    ifmap_dram_words: int
    filter_dram_words: int
    ofmap_dram_words: int


# ---------------------------------------------------------------- demand construction
def _fold_sizes(total: int, step: int) -> np.ndarray:
    f = _cdiv(total, step)
    s = np.full(f, step, np.int64)
    s[-1] = total - step * (f - 1)
    return s


def _diag_blocks(blocks: int, t: int, width: int, last_valid: int, pre: int,
                 per_fold: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int]:
    """Demand on an operand prefetched along anti-diagonals, for one fold of every block.

    The prefetch matrix stacks ``blocks`` tiles of ``t`` rows x ``width`` columns (the last tile
    has ``last_valid`` used columns, the rest is padding) and is read diagonal by diagonal,
    bottom row first. A fold of block b requests, in its row x, the anti-diagonal
    d = b*t + x - pre, columns ascending. Returns (rows, first, last) of the requesting rows,
    rows numbered b * per_fold + x, and the number of valid words.
    """
    ms = blocks * t
    nd = ms + width - 1
    d = np.arange(nd, dtype=np.int64)
    cmin = np.maximum(0, d - ms + 1)
    cmax = np.minimum(d, width - 1)
    lastrow0 = (blocks - 1) * t

    def invalid_before(dd, c_end):          # invalid cols in [cmin, c_end) on diagonal dd
        lo = np.maximum(np.maximum(0, dd - ms + 1), last_valid)
        hi = np.minimum(c_end - 1, dd - lastrow0)
        return np.maximum(0, hi - lo + 1)

    count = (cmax - cmin + 1) - invalid_before(d, cmax + 1)
    cum = np.concatenate(([0], np.cumsum(count)))
    valid = int(cum[-1])

    # requesting rows of a fold of block b: u = x - pre in [0, t + v_b - 1)
    vb = np.full(blocks, width, np.int64)
    vb[-1] = last_valid
    span = t + vb - 1
    b = np.repeat(np.arange(blocks, dtype=np.int64), span)
    starts = np.concatenate(([0], np.cumsum(span)[:-1]))
    uu = np.arange(int(span.sum()), dtype=np.int64) - np.repeat(starts, span)
    r_lo = np.maximum(0, uu - t + 1)
    r_hi = np.minimum(vb[b] - 1, uu)
    dd = b * t + uu
    cmin_d = np.maximum(0, dd - ms + 1)
    first = cum[dd] + (r_lo - cmin_d) - invalid_before(dd, r_lo)
    last = cum[dd] + (r_hi - cmin_d) - invalid_before(dd, r_hi)
    return (b * per_fold + uu + pre, first, last), valid


def _rowmajor_stream(kdim: int, widths: np.ndarray, rows: int, fold_fc: np.ndarray,
                     fold_fr: np.ndarray, per_fold: int):
    """Demand on an operand prefetched row by row: tiles of ``kdim`` rows x ``widths[fc]``
    used columns stacked by column fold. Fold (fc, fr) requests in its rows x < R the tile row
    fr*R + R-1-x (flipped), columns ascending. Returns (rows, first, last) of the rows that
    request something (global row numbers), and the number of valid words."""
    base = np.concatenate(([0], np.cumsum(kdim * widths)))
    x = np.arange(rows, dtype=np.int64)                 # only the first R rows of a fold read
    nf = len(fold_fc)
    fc = np.repeat(fold_fc.astype(np.int64), rows)
    fr = np.repeat(fold_fr.astype(np.int64), rows)
    xx = np.tile(x, nf)
    gr = np.repeat(np.arange(nf, dtype=np.int64) * per_fold, rows) + xx
    kk = fr * rows + rows - 1 - xx
    ok = kk < kdim
    w = widths[fc]
    first = base[fc] + kk * w
    return (gr[ok], first[ok], first[ok] + w[ok] - 1), int(base[-1])


def _write_template(t_out: int, pre: int, cu: int, lo: int, per_fold: int) -> np.ndarray:
    """Words written per row of one fold: a skewed block whose column j (< cu) holds its rows
    [lo, t_out) at fold rows pre + j + [lo, t_out)."""
    x = np.arange(per_fold, dtype=np.int64)
    jmin = np.maximum(0, x - pre - t_out + 1)
    jmax = np.minimum(cu - 1, x - pre - lo)
    return np.maximum(0, jmax - jmin + 1)


class _Writes:
    """Words written per row, stored as one template per kind of fold (closed-form lookups
    instead of an array over every row)."""

    def __init__(self, t_out: int, pre: int, cu: np.ndarray, lo: np.ndarray,
                 per_fold: int) -> None:
        keys = list(zip(cu.tolist(), lo.tolist()))
        uniq = sorted(set(keys))
        idx = {k: i for i, k in enumerate(uniq)}
        self.per_fold = per_fold
        self.key = np.array([idx[k] for k in keys], np.int64)
        self.tmpl = [_write_template(t_out, pre, c, l, per_fold) for c, l in uniq]
        self.tcum = [np.cumsum(t) for t in self.tmpl]                  # inclusive
        tot = np.array([int(c[-1]) for c in self.tcum], np.int64)[self.key]
        self.fcum = np.cumsum(tot)                                      # inclusive, per fold
        self.rows = len(keys) * per_fold
        self.total = int(self.fcum[-1])

    def w(self, row: int) -> int:
        f, x = divmod(row, self.per_fold)
        return int(self.tmpl[self.key[f]][x])

    def before(self, row: int) -> int:
        """Words written by rows < ``row``."""
        if row >= self.rows:
            return self.total
        f, x = divmod(row, self.per_fold)
        base = int(self.fcum[f - 1]) if f else 0
        return base + (int(self.tcum[self.key[f]][x - 1]) if x else 0)

    def first_reaching(self, v: int) -> int:
        """First row whose writes bring the running total to >= v (rows if none)."""
        if v <= 0:
            return 0
        f = int(np.searchsorted(self.fcum, v, side="left"))
        if f >= len(self.fcum):
            return self.rows
        base = int(self.fcum[f - 1]) if f else 0
        x = int(np.searchsorted(self.tcum[self.key[f]], v - base, side="left"))
        return f * self.per_fold + x


def demand(m: int, k: int, n: int, cfg: SystolicConfig, per_fold: int,
           need: tuple[bool, bool] = (True, True)):
    """SCALE-Sim's demand matrices, reduced to what the buffers need.

    Returns ``(ifmap, filter, writes)``: per read operand ``(segments, valid, padded)`` where
    segments is a list of ``(row_base, rows, first, last)``: rows (relative to row_base) that
    request something and the first and last position (in the operand's prefetch order) they
    request (arrays shared between segments that repeat), or None when ``need`` says the
    operand is not wanted; and the writes (:class:`_Writes`).
    """
    r, c = cfg.rows, cfg.cols
    df = cfg.dataflow
    sr, sc = {"ws": (k, n), "os": (m, n), "is": (k, m)}[df]
    rs, cs = _fold_sizes(sr, r), _fold_sizes(sc, c)
    rf, cf = len(rs), len(cs)
    fold_fr = np.tile(np.arange(rf), cf)          # column folds outer, row folds inner
    fold_fc = np.repeat(np.arange(cf), rf)
    ru, cu = rs[fold_fr], cs[fold_fc]
    period = rf * per_fold

    def by_row_fold(t, width, last_valid, pre):   # block = row fold: one period per col fold
        def build():
            dem, valid = _diag_blocks(rf, t, width, last_valid, pre, per_fold)
            return [(fc * period, *dem) for fc in range(cf)]
        return build

    def by_col_fold(t, width, last_valid, pre):   # block = col fold, repeated per row fold
        def build():
            (rows, first, last), _ = _diag_blocks(cf, t, width, last_valid, pre, per_fold)
            cut = np.searchsorted(rows, np.arange(cf + 1) * per_fold)
            segs = []
            for fc in range(cf):
                a, b = cut[fc], cut[fc + 1]
                blk = (rows[a:b] - fc * per_fold, first[a:b], last[a:b])
                segs += [((fc * rf + fr) * per_fold, *blk) for fr in range(rf)]
            return segs
        return build

    def rowmajor(width_folds):
        def build():
            dem, _ = _rowmajor_stream(k, width_folds, r, fold_fc, fold_fr, per_fold)
            return [(0, *dem)]
        return build

    if df == "ws":
        ifm = (by_row_fold(m, r, int(rs[-1]), r), rf * m * r)
        fil = (rowmajor(cs), cf * k * c)
        wr = _Writes(m, 2 * r - 1, cu, np.zeros_like(cu), per_fold)
    elif df == "os":
        ifm = (by_row_fold(k, r, int(rs[-1]), 0), rf * k * r)
        fil = (by_col_fold(k, c, int(cs[-1]), 0), cf * k * c)
        wr = _Writes(r, k - 1, cu, r - ru, per_fold)
    else:
        ifm = (rowmajor(cs), cf * k * c)
        fil = (by_row_fold(n, r, int(rs[-1]), r), rf * n * r)
        wr = _Writes(n, 2 * r - 1, cu, np.zeros_like(cu), per_fold)
    out = []
    for (build, padded), valid, want in zip((ifm, fil), (m * k, k * n), need):
        out.append((build() if want else None, valid, padded))
    return out[0], out[1], wr


# ---------------------------------------------------------------- read buffer
@dataclass
class _ReadBuf:
    words: int            # E
    bw: float             # words per cycle of its DRAM port
    valid: int
    padded: int

    def __post_init__(self) -> None:
        e = self.words
        self.active = math.ceil(e * 0.5)
        self.prefetch = e - self.active
        self.eps = math.ceil(e / 100)
        self.nlines = self.valid // self.eps + 1
        a = math.ceil(self.active / self.eps)
        self.a = min(a, self.nlines)
        self.p = min(math.ceil(self.prefetch / self.eps), self.nlines - self.a)
        bw = max(1, int(self.bw))
        self.req_lines = math.ceil(self.prefetch / bw)
        self.bw_int = bw
        # words SCALE-Sim counts for the first fill (its fetch matrix keeps the padding)
        self.fill_lines = min(math.ceil(self.active / bw), math.ceil(self.padded / bw))

    @property
    def fits(self) -> bool:
        return self.a >= self.nlines


def _miss_events(buf: _ReadBuf, segments):
    """Rows where the window must move and how many moves, from the demand alone."""
    if buf.fits:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nl, a, p = buf.nlines, buf.a, buf.p
    s = 0
    ev_rows, ev_moves = [], []
    lines = {}
    for base, rows, first, last in segments:
        key = id(first)
        if key not in lines:             # segments that repeat share their arrays
            lines[key] = (first // buf.eps, last // buf.eps)
        fl, ll = lines[key]
        j, total = 0, len(rows)
        chunk = 256
        while j < total:
            e = min(total, j + chunk)
            bad = (((fl[j:e] - s) % nl) >= a) | (((ll[j:e] - s) % nl) >= a)
            hit = np.flatnonzero(bad)
            if not len(hit):
                j = e
                chunk = min(chunk * 2, 1 << 16)
                continue
            j += int(hit[0])
            moves = 0
            for line in (int(fl[j]), int(ll[j])):
                delta = (line - s) % nl
                if delta >= a:    # the window steps by p <= a lines: it lands in [a - p, a)
                    k = _cdiv(delta - a + 1, p)
                    s = (s + k * p) % nl
                    moves += k
            ev_rows.append(base + int(rows[j]))
            ev_moves.append(moves)
            j += 1
            chunk = 256
    return np.asarray(ev_rows, np.int64), np.asarray(ev_moves, np.int64)


def _miss_stall(last: int, step: int, k: int, cyc: int) -> int:
    """A read operand's stall in a row (at cycle ``cyc``) that needs ``k`` window moves.

    SCALE-Sim runs, per move j: L_j = last + j*step; p = L_j - (cyc + off); off += p, and
    off += p again if p > 0 (off starts at the hit latency 1); the stall is off - 1. With
    q = off - (L_j - cyc) this is q_j = max(p_j, 0), p_(j+1) = step - q_j: after the first
    move q alternates between two values, so k moves cost O(1).
    """
    p1 = last + step - (cyc + 1)
    q = [max(p1, 0)]
    for _ in range(2):
        q.append(max(step - q[-1], 0))
    qk = q[0] if k == 1 else (q[1] if k % 2 == 0 else q[2])
    return qk + last + k * step - cyc - 1


# ---------------------------------------------------------------- write buffer
class _WriteBuf:
    """SCALE-Sim's write_buffer: slots, lines of bw words, drains of ceil(drain/bw) lines."""

    def __init__(self, words: int, bw: float) -> None:
        self.e = words
        self.active = math.ceil(words * 0.5)
        self.drain = words - self.active
        self.bw = max(1, int(bw))
        self.n = math.ceil(self.drain / self.bw)
        self.stored = 0          # words written so far
        self.credit = 0          # slots given back by drains
        self.drain_end = 0
        self.flushed = 0         # words in lines already in the trace matrix
        self.lines = 0           # lines in the trace matrix
        self.dptr = 0            # lines drained
        self.partial: dict[int, int] = {}   # line index -> words, for flushed partial lines
        self.max_end = -1        # latest drain end so far

    def _flush(self) -> None:
        extra = self.stored - self.flushed
        if extra:
            self.lines += _cdiv(extra, self.bw)
            if extra % self.bw:
                self.partial[self.lines - 1] = extra % self.bw
            self.flushed = self.stored

    def _drain(self, cycle: int) -> None:
        take = min(self.n, self.lines - self.dptr)
        if take <= 0:
            return
        last = self.dptr + take - 1
        data = take * self.bw - (self.bw - self.partial[last] if last in self.partial else 0)
        self.credit += data
        self.dptr += take
        self.drain_end = cycle + take - 1
        self.max_end = max(self.max_end, self.drain_end)

    def _start_drain(self, cycle: int) -> None:
        self._flush()
        self._drain(cycle)

    def row(self, cycle: int, w: int) -> int:
        """Serve one row's ``w`` writes at ``cycle``; the row's ofmap stall."""
        cur = cycle
        end = self.stored + w
        while self.stored < end:
            if cur < self.drain_end:
                e_star = max(self.stored + 1, self.e + self.credit)   # first with free <= 0
                if e_star > end:
                    self.stored = end
                    break
                self.stored = e_star
                cur = self.drain_end
            else:
                e_star = max(self.stored + 1, self.credit + self.drain + 1)
                if e_star > end:
                    self.stored = end
                    break
                self.stored = e_star
                self._start_drain(cur)
        return cur - cycle

    def next_event(self, i0: int, s: int, wr: "_Writes") -> int:
        """First row >= i0 where serving it could do more than store (stall or drain)."""
        rows = wr.rows
        best = rows
        split = max(i0, self.drain_end - s)            # rows before it run during a drain
        if i0 < split:
            j = wr.first_reaching(self.e + self.credit)
            j = max(j, i0)
            if j < min(split, rows):
                best = j
        j = wr.first_reaching(self.credit + self.drain + 1)
        j = max(j, split)
        return min(best, j)

    def finish(self, cycle: int) -> int:
        """SCALE-Sim's empty_all_buffers from ``cycle`` (the last row's service cycle): drain
        every line left, back to back. Returns the last write's cycle (the ofmap DRAM stop)."""
        stop = self.max_end
        self._flush()
        while self.dptr < self.lines:
            self._drain(cycle)
            stop = max(stop, self.drain_end)
            cycle = self.drain_end + 1
        return stop


# ---------------------------------------------------------------- the layer
def scalesim_memory(m: int, k: int, n: int, cfg: SystolicConfig, folds: int,
                    per_fold: int) -> DramResult:
    """Stall and total cycles of one GEMM under SCALE-Sim's USER-bandwidth memory system.

    Words are operand elements (``cfg.elem_bytes``; SCALE-Sim's word_size is 1 byte, so int8
    matches it exactly); each SRAM holds ``kib * 1024 / elem_bytes`` words and each of the three
    DRAM ports moves ``floor(dram_bytes_per_cycle / elem_bytes)`` (at least 1) words per cycle.
    """
    eb = cfg.elem_bytes
    bw = max(1, int(cfg.dram_bytes_per_cycle // eb))
    words = (int(cfg.ifmap_sram_kib * 1024 // eb), int(cfg.filter_sram_kib * 1024 // eb))
    valid = (m * k, k * n)
    probe = [_ReadBuf(w, bw, v, 0) for w, v in zip(words, valid)]
    ifm, fil, wr = demand(m, k, n, cfg, per_fold, need=(not probe[0].fits, not probe[1].fits))
    rows = folds * per_fold
    bufs = [_ReadBuf(w, bw, d[1], d[2]) for w, d in zip(words, (ifm, fil))]
    events = [_miss_events(b, d[0]) for b, d in zip(bufs, (ifm, fil))]
    wb = _WriteBuf(int(cfg.ofmap_sram_kib * 1024 // eb), bw)

    ptr = [0, 0]
    last_pf = [-1, -1]
    s = 0
    i = 0
    total = None
    while i < rows:
        nxt = [int(ev[0][p]) if p < len(ev[0]) else rows for ev, p in zip(events, ptr)]
        j = min(nxt[0], nxt[1], wb.next_event(i, s, wr))
        if j >= rows:
            break
        # rows i .. j-1 only store their writes
        wb.stored = wr.before(j)
        cyc = j + s
        stalls = [0, 0]
        for o in (0, 1):
            if nxt[o] == j:
                moves = int(events[o][1][ptr[o]])
                stalls[o] = _miss_stall(last_pf[o], bufs[o].req_lines + 1, moves, cyc)
                last_pf[o] += moves * (bufs[o].req_lines + 1)
                ptr[o] += 1
        of = wb.row(cyc, wr.w(j))
        if j == rows - 1:
            total = cyc + of
        s += int(max(stalls[0], stalls[1], of))
        i = j + 1
    if total is None:
        wb.stored = wr.total
        total = rows - 1 + s
    fill = max(b.fill_lines for b in bufs)
    stop = wb.finish(total)
    reads = [b.fill_lines * bw + int(ev[1].sum()) * b.req_lines * bw
             for b, ev in zip(bufs, events)]
    return DramResult(s, int(total), fill, max(0, int(stop) - int(total)), reads[0], reads[1],
                      int(wb.credit))
