"""Run SCALE-Sim 3.0 on GEMM cases; executed by SCALE-Sim's own interpreter, not llmc's.

Why a separate script: SCALE-Sim needs numpy<2 and pandas<2.3, which llmc's environment does
not have, so llmc runs this file in ``.venv-scalesim`` (scripts/setup_scalesim.sh) as a
subprocess. It imports nothing from llmc. Input: a JSON list of cases on stdin, each
``{"name", "M", "N", "K", "rows", "cols", "dataflow", "ifmap_kb", "filter_kb", "ofmap_kb",
"bandwidth_mode" ("CALC"|"USER"), "bandwidth"}``. Output: one JSON list on stdout with
SCALE-Sim's compute, bandwidth and detailed-access report rows for each case.
"""
import contextlib
import csv
import io
import json
import os
import sys
import tempfile

CONFIG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight : {rows}
ArrayWidth : {cols}
IfmapSramSzkB : {ifmap_kb}
FilterSramSzkB : {filter_kb}
OfmapSramSzkB : {ofmap_kb}
IfmapOffset : 0
FilterOffset : 10000000
OfmapOffset : 20000000
Bandwidth : {bandwidth}
Dataflow : {dataflow}
MemoryBanks : 1
ReadRequestBuffer : 32
WriteRequestBuffer : 32

[layout]
IfmapCustomLayout : False
IfmapSRAMBankBandwidth : {read_bw}
IfmapSRAMBankNum : 1
IfmapSRAMBankPort : 2
FilterCustomLayout : False
FilterSRAMBankBandwidth : {read_bw}
FilterSRAMBankNum : 1
FilterSRAMBankPort : 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth : {bandwidth_mode}
UseRamulatorTrace : False
"""


def _read_csv(path):
    with open(path) as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh)]
    head = [h for h in rows[0] if h]
    return [dict(zip(head, r)) for r in rows[1:] if r and r[0]]


def run_case(case, work):
    from scalesim.scale_sim import scalesim

    name = case["name"]
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "cfg.cfg")
    with open(cfg, "w") as fh:
        fh.write(CONFIG.format(**{"ifmap_kb": 1 << 20, "filter_kb": 1 << 20, "ofmap_kb": 1 << 20,
                                  "bandwidth_mode": "CALC", "bandwidth": 10,
                                  "read_bw": case.get("bandwidth", 10), **case}))
    topo = os.path.join(d, "topo.csv")
    with open(topo, "w") as fh:  # SCALE-Sim drops the last field of each row: trailing comma
        fh.write("Layer, M, N, K,\n")
        fh.write(f"{name}, {case['M']}, {case['N']}, {case['K']},\n")
    layout = os.path.join(d, "layout.csv")
    with open(layout, "w") as fh:
        fh.write("Layer,\n")
    sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo,
                   layout=layout, input_type_gemm=True)
    out = os.path.join(d, "out")
    with contextlib.redirect_stdout(io.StringIO()):
        sim.run_scale(top_path=out)
    res = {}
    for root, _dirs, files in os.walk(out):
        for f in files:
            if f.endswith("_REPORT.csv"):
                rows = _read_csv(os.path.join(root, f))
                res[f[:-len(".csv")]] = rows[0] if rows else {}
    return {"case": case, **res}


def main():
    cases = json.load(sys.stdin)
    with tempfile.TemporaryDirectory(prefix="llmc-scalesim-") as work:
        results = [run_case(c, work) for c in cases]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
