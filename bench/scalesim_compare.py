"""llmc's systolic cycle model vs SCALE-Sim 3.0 on GEMM layers; prints a Markdown table.

Cases (the issue's list): M=1 decode GEMVs and M=128 prefill with K, N in {768, 3072}, plus the
awkward 100x300x77, on 8x8, 32x32 and 128x128 arrays, for ws/os/is. SCALE-Sim runs in its own
venv (scripts/setup_scalesim.sh); large cases take SCALE-Sim minutes each (it builds per-cycle
demand matrices; a 1x768x3072 GEMM on 32x32 takes it ~4 min here), so ``--quick`` runs the
subset that finishes in about half an hour: 100x300x77 on every array and dataflow, and the
768x768 decode/prefill layers on 128x128.

    python bench/scalesim_compare.py [--quick] [--json out.json]

``--dram`` compares total cycles with limited DRAM bandwidth instead: SCALE-Sim's USER
bandwidth mode against llmc's ``scalesim`` DRAM model, for every bandwidth of
``--bandwidths`` (default 1,2,4,16 words = bytes per cycle) with ``--sram-kb`` KB SRAMs
(default 64), and prints the table and the max / median % error per bandwidth:

    python bench/scalesim_compare.py --dram --arrays 8,32,128 --shapes 100x300x77 --json d.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import statistics

from llmc.backends.systolic.sim.validate import Case, DramCase, compare, compare_dram

SHAPES = [(1, 768, 768), (1, 768, 3072), (1, 3072, 768), (128, 768, 768), (128, 768, 3072),
          (128, 3072, 768), (100, 300, 77)]
ARRAYS = [8, 32, 128]


def cases(quick: bool) -> list[Case]:
    if quick:
        return ([Case(100, 300, 77, a, a, df) for a in ARRAYS for df in ("ws", "os", "is")] +
                [Case(m, 768, 768, 128, 128, df) for m in (1, 128) for df in ("ws", "os", "is")])
    return [Case(m, k, n, a, a, df) for a in ARRAYS for df in ("ws", "os", "is")
            for (m, k, n) in SHAPES]


def dram_main(args: argparse.Namespace) -> None:
    """Limited-bandwidth comparison, one SCALE-Sim subprocess per case."""
    arrays = [int(a) for a in args.arrays.split(",")] if args.arrays else ARRAYS
    shapes = ([tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
              if args.shapes else SHAPES)
    dfs = args.dataflows.split(",")
    bws = [int(b) for b in args.bandwidths.split(",")]
    todo = [DramCase(m, k, n, a, a, df, bw, args.sram_kb) for a in arrays for df in dfs
            for (m, k, n) in shapes for bw in bws]
    t0 = time.time()
    rows = []
    for c in todo:
        t1 = time.time()
        rows += compare_dram([c])
        r = rows[-1]
        print(f"# {r['case']}: total llmc {r['llmc_total_cycles']} scalesim "
              f"{r['scalesim_total_cycles']} ({r['diff_pct']:+.3f}%), stalls llmc "
              f"{r['llmc_stall_cycles']} scalesim {r['scalesim_stall_cycles']}, "
              f"{time.time() - t1:.0f} s", flush=True)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
    print(f"\nmachine: {platform.processor() or platform.machine()}, "
          f"{time.time() - t0:.0f} s\n")
    print(dram_table(rows))


def dram_table(rows: list[dict]) -> str:
    """Markdown: one row per case, then max / median |% error| per bandwidth."""
    out = ["| M x K x N | array | df | B/cycle | SRAM KB | llmc total | SCALE-Sim total | "
           "% diff | llmc stalls | SCALE-Sim stalls | incl. prefetch llmc / SS |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['m']}x{r['k']}x{r['n']} | {r['array']} | {r['dataflow']} | "
                   f"{r['bandwidth']} | {r['sram_kb']} | {r['llmc_total_cycles']} | "
                   f"{r['scalesim_total_cycles']} | {r['diff_pct']:+.3f} | "
                   f"{r['llmc_stall_cycles']} | {r['scalesim_stall_cycles']} | "
                   f"{r['llmc_total_incl_prefetch']} / {r['scalesim_total_incl_prefetch']} |")
    out += ["", "| B/cycle | cases | max abs % error | median abs % error |", "|---|---|---|---|"]
    for bw in sorted({r["bandwidth"] for r in rows}):
        errs = [abs(r["diff_pct"]) for r in rows if r["bandwidth"] == bw]
        out.append(f"| {bw} | {len(errs)} | {max(errs):.3f} | {statistics.median(errs):.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--arrays", help="square array sizes, e.g. 32,128 (overrides the set)")
    ap.add_argument("--shapes", help="MxKxN list, e.g. 1x768x3072,128x3072x768")
    ap.add_argument("--dram", action="store_true", help="limited-bandwidth total cycles")
    ap.add_argument("--bandwidths", default="1,2,4,16")
    ap.add_argument("--sram-kb", type=int, default=64)
    ap.add_argument("--dataflows", default="ws,os,is")
    args = ap.parse_args()
    if args.dram:
        dram_main(args)
        return
    t0 = time.time()
    rows = []
    todo = cases(args.quick)
    if args.arrays or args.shapes:
        arrays = [int(a) for a in args.arrays.split(",")] if args.arrays else ARRAYS
        shapes = ([tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
                  if args.shapes else SHAPES)
        todo = [Case(m, k, n, a, a, df) for a in arrays for df in ("ws", "os", "is")
                for (m, k, n) in shapes]
    for c in todo:          # one subprocess per case: progress and bounded memory
        rows += compare([c])
        r = rows[-1]
        print(f"# {r['case']}: cycles llmc {r['llmc_cycles']} scalesim {r['scalesim_cycles']}; "
              f"reads/writes llmc {r['llmc_ifmap_reads']}/{r['llmc_filter_reads']}/"
              f"{r['llmc_ofmap_writes']} scalesim {r['scalesim_ifmap_reads']}/"
              f"{r['scalesim_filter_reads']}/{r['scalesim_ofmap_writes']}", flush=True)
        if args.json:                    # keep what is done if a long run is stopped
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
    print(f"\nmachine: {platform.processor() or platform.machine()}, "
          f"{time.time() - t0:.0f} s\n")
    print("| M x K x N | array | df | llmc cycles | SCALE-Sim cycles | ifmap rd llmc/SS | "
          "filter rd llmc/SS | ofmap wr llmc/SS | map eff % | match |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok = (r["llmc_cycles"] == r["scalesim_cycles"] and
              r["llmc_ifmap_reads"] == r["scalesim_ifmap_reads"] and
              r["llmc_filter_reads"] == r["scalesim_filter_reads"] and
              r["llmc_ofmap_writes"] == r["scalesim_ofmap_writes"])
        print(f"| {r['m']}x{r['k']}x{r['n']} | {r['array']} | {r['dataflow']} | "
              f"{r['llmc_cycles']} | {r['scalesim_cycles']} | "
              f"{r['llmc_ifmap_reads']}/{r['scalesim_ifmap_reads']} | "
              f"{r['llmc_filter_reads']}/{r['scalesim_filter_reads']} | "
              f"{r['llmc_ofmap_writes']}/{r['scalesim_ofmap_writes']} | "
              f"{r['llmc_mapping_eff']}/{r['scalesim_mapping_eff']} | "
              f"{'yes' if ok else 'NO'} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
