"""MiniLM (real all-MiniLM-L6-v2 weights) on x86: llmc vs ONNX Runtime vs PyTorch, one run.

Prints compile time, the max abs error of llmc against ONNX Runtime, and a latency table
(median of N, the three peers timed round-robin so machine load hits them alike) with
ratios, for batch 1 and 8 at sequence length 128, plus llmc's process-CPU-time ratio to
ONNX Runtime (the load-robust figure on a shared machine) and the load average.
Usage: python bench/minilm.py [--repeat 20] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine, ort_session, print_table  # noqa: E402

THREADS = fair_environment()

import numpy as np  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json")
    args = ap.parse_args()

    import torch

    import llmc
    from bench.fusion import _round_robin_cpu
    from tests.models import minilm, minilm_onnx

    torch.set_num_threads(THREADS)
    path = str(minilm_onnx())
    t0 = time.perf_counter()
    art = llmc.compile(path, target="x86")
    compile_s = time.perf_counter() - t0
    model = art.load()

    sess = ort_session(path, THREADS, spinning=True)
    tmodel = minilm()

    rows = []
    for batch in (1, 8):
        rng = np.random.default_rng(batch)
        inputs = {"input_ids": rng.integers(0, 30000, (batch, 128), dtype=np.int64),
                  "attention_mask": np.ones((batch, 128), np.int64)}
        ref = sess.run(None, inputs)[0]
        got = model.run(inputs)["last_hidden_state"]
        err = float(np.abs(got - ref).max())
        tin = {k: torch.from_numpy(v) for k, v in inputs.items()}
        def torch_run(tin=tin):
            with torch.inference_mode():
                tmodel(**tin)
        wall, cpu = _round_robin_cpu({"llmc": lambda inputs=inputs: model.run(inputs),
                                      "onnxruntime": lambda inputs=inputs: sess.run(None, inputs),
                                      "pytorch": torch_run}, args.repeat)
        row = {"workload": f"minilm b{batch} s128", **wall, "max_abs_err_vs_ort": err,
               "cpu_ms": cpu, "load": os.getloadavg()[0]}
        rows.append(row)
    print(f"machine: {machine()}")
    print(f"llmc compile time (MiniLM, x86, no tuning): {compile_s:.1f} s")
    for r in rows:
        print(f"{r['workload']}: llmc max abs err vs ONNX Runtime {r['max_abs_err_vs_ort']:.2e}; "
              f"process CPU time llmc/ORT {r['cpu_ms']['llmc'] / r['cpu_ms']['onnxruntime']:.2f}x; "
              f"load average {r['load']:.1f}")
    print_table(rows, ["llmc", "onnxruntime", "pytorch"])
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "compile_s": compile_s, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
