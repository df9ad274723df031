"""Validation against SCALE-Sim 3.0 (PyPI ``scalesim``), run in its own venv as a subprocess.

Why a subprocess: SCALE-Sim pins numpy<2 and pandas<2.3; llmc's environment has newer ones.
``scripts/setup_scalesim.sh`` creates ``.venv-scalesim``; ``$LLMC_SCALESIM_PYTHON`` overrides the
interpreter. :func:`compare` runs the same GEMMs through llmc's cycle model and SCALE-Sim and
returns one row per case: SCALE-Sim in CALC bandwidth mode with buffers large enough to be
stall-free (compute cycles and SRAM counts). :func:`compare_dram` runs it in USER bandwidth mode
(limited DRAM bandwidth, small SRAMs) against the ``scalesim`` DRAM model.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from llmc.errors import BackendError

from .config import SystolicConfig
from .cycles import gemm_stats

DRIVER = Path(__file__).with_name("scalesim_driver.py")
REPO = Path(__file__).resolve().parents[3]


def scalesim_python() -> Path:
    """The interpreter that has SCALE-Sim installed."""
    env = os.environ.get("LLMC_SCALESIM_PYTHON")
    return Path(env) if env else REPO / ".venv-scalesim" / "bin" / "python"


@dataclass(frozen=True)
class Case:
    """One GEMM on one array: A [m, k] x B [k, n] on rows x cols with a dataflow."""

    m: int
    k: int
    n: int
    rows: int
    cols: int
    dataflow: str

    @property
    def name(self) -> str:
        return f"g{self.m}x{self.k}x{self.n}_{self.rows}x{self.cols}_{self.dataflow}"


def run_scalesim(cases: list[Case], timeout: float = 1800) -> list[dict]:
    """SCALE-Sim's report rows for each case (CALC mode, 1 GiB buffers)."""
    py = scalesim_python()
    if not py.exists():
        raise BackendError(f"SCALE-Sim's interpreter {py} is missing: run "
                           "scripts/setup_scalesim.sh (or set LLMC_SCALESIM_PYTHON)")
    payload = [{"name": c.name, "M": c.m, "N": c.n, "K": c.k, "rows": c.rows, "cols": c.cols,
                "dataflow": c.dataflow} for c in cases]
    proc = subprocess.run([str(py), str(DRIVER)], input=json.dumps(payload), text=True,
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise BackendError(f"SCALE-Sim failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def compare(cases: list[Case]) -> list[dict]:
    """llmc's cycle model vs SCALE-Sim, one row per case (counts side by side)."""
    rows = []
    for case, res in zip(cases, run_scalesim(cases)):
        cfg = SystolicConfig(rows=case.rows, cols=case.cols, dataflow=case.dataflow,
                             ifmap_sram_kib=1 << 20, filter_sram_kib=1 << 20,
                             ofmap_sram_kib=1 << 20, accumulator_kib=1 << 20,
                             dram_bytes_per_cycle=1e9)
        s = gemm_stats(case.m, case.k, case.n, cfg, case.name)
        cr, da = res["COMPUTE_REPORT"], res["DETAILED_ACCESS_REPORT"]
        rows.append({
            "case": case.name, "m": case.m, "k": case.k, "n": case.n,
            "array": f"{case.rows}x{case.cols}", "dataflow": case.dataflow,
            "llmc_cycles": s.compute_cycles, "scalesim_cycles": int(float(cr["Total Cycles"])),
            "llmc_total_cycles": s.compute_cycles + s.stall_cycles,
            "scalesim_stall_cycles": int(float(cr["Stall Cycles"])),
            "llmc_ifmap_reads": s.ifmap_sram_reads,
            "scalesim_ifmap_reads": int(float(da["SRAM IFMAP Reads"])),
            "llmc_filter_reads": s.filter_sram_reads,
            "scalesim_filter_reads": int(float(da["SRAM Filter Reads"])),
            "llmc_ofmap_writes": s.ofmap_sram_writes,
            "scalesim_ofmap_writes": int(float(da["SRAM OFMAP Writes"])),
            "llmc_mapping_eff": round(100 * s.mapping_efficiency, 4),
            "scalesim_mapping_eff": round(float(cr["Mapping Efficiency %"]), 4),
            "llmc_util": round(100 * s.macs / (case.rows * case.cols * (s.compute_cycles)), 4),
            "scalesim_util": round(float(cr["Overall Util %"]), 4),
        })
    return rows


@dataclass(frozen=True)
class DramCase:
    """A GEMM with limited DRAM bandwidth: ``bandwidth`` words (= bytes, int8) per cycle per
    port and three SRAMs of ``sram_kb`` KB each."""

    m: int
    k: int
    n: int
    rows: int
    cols: int
    dataflow: str
    bandwidth: int
    sram_kb: int

    @property
    def name(self) -> str:
        return (f"g{self.m}x{self.k}x{self.n}_{self.rows}x{self.cols}_{self.dataflow}"
                f"_bw{self.bandwidth}_s{self.sram_kb}")

    def config(self) -> SystolicConfig:
        """The llmc machine SCALE-Sim's run describes (int8: one word = one byte)."""
        return SystolicConfig(rows=self.rows, cols=self.cols, dataflow=self.dataflow,
                              ifmap_sram_kib=self.sram_kb, filter_sram_kib=self.sram_kb,
                              ofmap_sram_kib=self.sram_kb, accumulator_kib=self.sram_kb,
                              dram_bytes_per_cycle=self.bandwidth, dram_model="scalesim")


def compare_dram(cases: list[DramCase], timeout: float = 3600) -> list[dict]:
    """Total cycles with limited DRAM bandwidth: llmc's ``scalesim`` DRAM model vs SCALE-Sim's
    USER bandwidth mode (its ifmap/filter ports get ``bandwidth`` through the [layout] bank
    bandwidths, which is where SCALE-Sim 3.0 reads them; the ofmap port through ``Bandwidth``).
    """
    py = scalesim_python()
    if not py.exists():
        raise BackendError(f"SCALE-Sim's interpreter {py} is missing: run "
                           "scripts/setup_scalesim.sh (or set LLMC_SCALESIM_PYTHON)")
    payload = [{"name": c.name, "M": c.m, "N": c.n, "K": c.k, "rows": c.rows, "cols": c.cols,
                "dataflow": c.dataflow, "bandwidth_mode": "USER", "bandwidth": c.bandwidth,
                "ifmap_kb": c.sram_kb, "filter_kb": c.sram_kb, "ofmap_kb": c.sram_kb}
               for c in cases]
    proc = subprocess.run([str(py), str(DRIVER)], input=json.dumps(payload), text=True,
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise BackendError(f"SCALE-Sim failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    rows_out = []
    for case, res in zip(cases, json.loads(proc.stdout)):
        s = gemm_stats(case.m, case.k, case.n, case.config(), case.name)
        cr, da = res["COMPUTE_REPORT"], res["DETAILED_ACCESS_REPORT"]
        ss_total = int(float(cr["Total Cycles"]))
        llmc_total = s.compute_cycles + s.stall_cycles
        rows_out.append({
            "case": case.name, "m": case.m, "k": case.k, "n": case.n,
            "array": f"{case.rows}x{case.cols}", "dataflow": case.dataflow,
            "bandwidth": case.bandwidth, "sram_kb": case.sram_kb,
            "llmc_total_cycles": llmc_total, "scalesim_total_cycles": ss_total,
            "llmc_stall_cycles": s.stall_cycles,
            "scalesim_stall_cycles": int(float(cr["Stall Cycles"])),
            "llmc_total_incl_prefetch": s.total_cycles,
            "scalesim_total_incl_prefetch": int(float(cr["Total Cycles (incl. prefetch)"])),
            "llmc_dram_read_words": s.dram_read_bytes // case.config().elem_bytes,
            "scalesim_dram_read_words": int(float(da["DRAM IFMAP Reads"])) +
            int(float(da["DRAM Filter Reads"])),
            "diff_pct": 100.0 * (llmc_total - ss_total) / ss_total,
        })
    return rows_out
