"""The cycle, traffic and energy model of one GEMM on the array, fold by fold.

Why closed forms: a layer's folds differ only in how many array rows and columns they use, so
every count is an arithmetic expression of (M, K, N, R, C); the model is exact with respect to
SCALE-Sim 3.0's compute cycles and SRAM counts and costs microseconds per layer. The default
DRAM model (``dram.py``) is also exact with respect to SCALE-Sim's limited-bandwidth total and
stall cycles; it costs one numpy pass over the layer's cycles plus a step per buffer fill.

Mapping (SCALE-Sim's convention; A [M, K] inputs, B [K, N] weights, Y [M, N]):

======== ============= ============== =============== ============================
dataflow  rows (Sr)     columns (Sc)   streamed (T)    cycles per fold
======== ============= ============== =============== ============================
ws        K             N              M               2R + C + T - 2
os        M             N              K               R + C + T - 2
is        K             M              N               2R + C + T - 2
======== ============= ============== =============== ============================

Folds: ceil(Sr/R) * ceil(Sc/C), executed one after the other (column folds outer, row folds
inner). WS/IS per fold: R cycles to load the stationary tile, T cycles to stream, R - 1 cycles of
skew to fill the rows and C - 1 to drain the columns. OS: T + (R - 1) + (C - 1). Compute cycles
of a layer = folds * per_fold - 1 (SCALE-Sim counts from cycle 0; the last output write lands
at cycle folds * per_fold - 1).

SRAM counts (elements, as SCALE-Sim counts them):
ws: ifmap reads M*K*ceil(N/C), filter reads K*N, ofmap writes M*N*ceil(K/R);
os: ifmap reads M*K*ceil(N/C), filter reads K*N*ceil(M/R), ofmap writes M*N + folds*(R + C)
(SCALE-Sim adds the padded fold's height + width per fold, a quirk kept for equality);
is: ifmap reads M*K, filter reads K*N*ceil(M/C), ofmap writes M*N*ceil(K/R).

DRAM and stalls, two models (``cfg.dram_model``):

* ``scalesim`` (default): SCALE-Sim 3.0's double-buffered scratchpads in its USER-bandwidth
  mode, replayed at the rows where a buffer fills or drains (``dram.py`` has the rules). Each
  of ifmap / filter / ofmap has its own port of ``dram_bytes_per_cycle / elem_bytes`` words per
  cycle and its own SRAM, outputs are written as words of the operand width, every partial sum
  of a K-folded layer goes to DRAM (no accumulator). compute + stall cycles equal SCALE-Sim's
  "Total Cycles"; prologue (first fill) + that + epilogue (final drain) its "Total Cycles
  (incl. prefetch)".
* ``fold`` (llmc's earlier model): an operand whose whole matrix fits in half its SRAM (double
  buffering) is fetched from DRAM once; otherwise every fold fetches its tile again. Partial
  sums stay in the accumulator when one fold's output tile (T x C or R x C values of 4 bytes)
  fits in half of it, and go to DRAM once; otherwise every row fold writes them out and reads
  them back. Fold f's fetches overlap fold f-1's compute on one shared port; a step takes
  max(compute, bytes / bandwidth), and the difference is a DRAM stall. The first fetch and the
  last write-back are the prologue and epilogue.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .config import SystolicConfig
from .dram import scalesim_memory


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Mapping:
    """How a GEMM is laid onto the array."""

    sr: int
    sc: int
    t: int
    row_folds: int
    col_folds: int
    per_fold: int

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds


def mapping(m: int, k: int, n: int, cfg: SystolicConfig) -> Mapping:
    """The (Sr, Sc, T) assignment and fold counts for ``cfg.dataflow``."""
    r, c = cfg.rows, cfg.cols
    if cfg.dataflow == "ws":
        sr, sc, t = k, n, m
        per = 2 * r + c + t - 2
    elif cfg.dataflow == "os":
        sr, sc, t = m, n, k
        per = r + c + t - 2
    else:  # "is"
        sr, sc, t = k, m, n
        per = 2 * r + c + t - 2
    return Mapping(sr, sc, t, _cdiv(sr, r), _cdiv(sc, c), per)


@dataclass
class GemmStats:
    """Everything the report shows about one array call (counts in elements unless *_bytes)."""

    name: str
    m: int
    k: int
    n: int
    dataflow: str
    folds: int
    macs: int
    compute_cycles: int
    stall_cycles: int
    prologue_cycles: int
    epilogue_cycles: int
    mapping_efficiency: float      # mean over folds of used PEs / all PEs
    utilization: float             # MACs / (PEs * (compute + stall cycles))
    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    sram_read_bytes: int
    sram_write_bytes: int
    dram_read_bytes: int
    dram_write_bytes: int
    energy_pj: float
    calls: int = 1

    @property
    def total_cycles(self) -> int:
        """Cycles from the first DRAM fetch to the last write-back."""
        return self.prologue_cycles + self.compute_cycles + self.stall_cycles + \
            self.epilogue_cycles

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_cycles"] = self.total_cycles
        return d


def _fold_sizes(total: int, step: int, folds: int) -> np.ndarray:
    """Used extent of each fold along one axis: step, ..., step, remainder."""
    s = np.full(folds, step, np.int64)
    s[-1] = total - step * (folds - 1)
    return s


def _fold_model(m: int, k: int, n: int, cfg: SystolicConfig, mp: Mapping, ru: np.ndarray,
                cu: np.ndarray) -> tuple[int, int, int, int, int]:
    """llmc's per-fold double-buffered model (``dram_model="fold"``): stall, prologue,
    epilogue cycles and DRAM read / write bytes."""
    eb, ab = cfg.elem_bytes, cfg.acc_bytes
    kib = 1024.0
    a_fits = m * k * eb <= cfg.ifmap_sram_kib * kib / 2
    b_fits = k * n * eb <= cfg.filter_sram_kib * kib / 2
    fr_idx = np.tile(np.arange(mp.row_folds), mp.col_folds)
    fc_idx = np.repeat(np.arange(mp.col_folds), mp.row_folds)
    first_col = fc_idx == 0
    first_row = fr_idx == 0
    if cfg.dataflow == "ws":      # A tile: T x rows_used (reused across col folds), B tile: ru x cu
        a_tile, b_tile = m * ru, ru * cu
        a_new = first_col if a_fits else np.ones_like(first_col)
        b_new = np.ones_like(first_col)          # every weight tile is used once
        out_tile, k_folded = m * cu, mp.row_folds > 1
    elif cfg.dataflow == "os":    # A tile: ru x K (reused across col folds), B tile: K x cu
        a_tile, b_tile = ru * k, k * cu
        a_new = first_col if a_fits else np.ones_like(first_col)
        b_new = first_row if b_fits else np.ones_like(first_row)
        out_tile, k_folded = ru * cu, False
    else:                         # IS: A tile ru x cu stationary, B tile: ru x N streamed
        a_tile, b_tile = ru * cu, ru * n
        a_new = np.ones_like(first_col)
        b_new = first_col if b_fits else np.ones_like(first_col)
        out_tile, k_folded = cu * n, mp.row_folds > 1
    rd = (a_tile * a_new + b_tile * b_new) * eb
    acc_fits = out_tile.max() * ab <= cfg.accumulator_kib * kib / 2
    last_row = fr_idx == mp.row_folds - 1
    if k_folded and not acc_fits:   # partial sums spill: write every fold, read back after
        wr = out_tile * ab
        rd = rd + np.where(first_row, 0, out_tile * ab)
    else:
        wr = np.where(last_row, out_tile * ab, 0)
    bw = cfg.dram_bytes_per_cycle
    per = mp.per_fold
    # step f: compute fold f while fetching fold f+1 and writing fold f-1's outputs
    nxt = np.append(rd[1:], 0)
    prv = np.insert(wr[:-1], 0, 0)
    xfer = np.ceil((nxt + prv) / bw)
    stall = int(np.maximum(xfer - per, 0).sum())
    prologue = int(np.ceil(rd[0] / bw))
    epilogue = int(np.ceil(wr[-1] / bw))
    dram_rd, dram_wr = int(rd.sum()), int(wr.sum())

    return stall, prologue, epilogue, dram_rd, dram_wr


def gemm_stats(m: int, k: int, n: int, cfg: SystolicConfig, name: str = "gemm") -> GemmStats:
    """Cycles, SRAM/DRAM traffic and energy of ``[m, k] @ [k, n]`` on ``cfg``'s array."""
    mp = mapping(m, k, n, cfg)
    r, c = cfg.rows, cfg.cols
    rows_used = _fold_sizes(mp.sr, r, mp.row_folds)          # per row fold
    cols_used = _fold_sizes(mp.sc, c, mp.col_folds)          # per col fold
    # folds in execution order: column folds outer, row folds inner
    ru = np.tile(rows_used, mp.col_folds)
    cu = np.repeat(cols_used, mp.row_folds)
    used = ru * cu
    map_eff = float(used.mean() / (r * c))
    compute = mp.folds * mp.per_fold - 1

    if cfg.dataflow == "ws":
        ifr, flr, ofw = m * k * mp.col_folds, k * n, m * n * mp.row_folds
    elif cfg.dataflow == "os":
        ifr, flr, ofw = m * k * mp.col_folds, k * n * mp.row_folds, m * n + mp.folds * (r + c)
    else:
        ifr, flr, ofw = m * k, k * n * mp.col_folds, m * n * mp.row_folds
    eb, ab = cfg.elem_bytes, cfg.acc_bytes
    sram_rd = (ifr + flr) * eb
    sram_wr = ofw * ab

    if cfg.dram_model == "scalesim":
        d = scalesim_memory(m, k, n, cfg, mp.folds, mp.per_fold)
        stall = d.total_cycles - compute
        prologue, epilogue = d.prologue_cycles, d.epilogue_cycles
        dram_rd = (d.ifmap_dram_words + d.filter_dram_words) * eb
        dram_wr = d.ofmap_dram_words * eb
    else:
        stall, prologue, epilogue, dram_rd, dram_wr = _fold_model(m, k, n, cfg, mp, ru, cu)

    macs = m * k * n
    busy = compute + stall
    util = macs / (r * c * busy) if busy else 0.0
    energy = (macs * cfg.energy_mac_pj + (sram_rd + sram_wr) * cfg.energy_sram_pj_per_byte +
              (dram_rd + dram_wr) * cfg.energy_dram_pj_per_byte)
    return GemmStats(name, m, k, n, cfg.dataflow, mp.folds, macs, compute, stall, prologue,
                     epilogue, map_eff, util, ifr, flr, ofw, sram_rd, sram_wr, dram_rd, dram_wr,
                     energy)
