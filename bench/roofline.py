"""Roofline of this machine and where llmc's kernels sit on it.

Measures, in one run:
- peak GFLOP/s: a large fp32 GEMM in PyTorch (2048^3; MKL/oneDNN near the machine's peak);
- memory bandwidth: a STREAM-like triad (a = b + s*c, torch, 3 x 256 MiB arrays, bytes read
  + written) and numpy's copy bandwidth (bench/llm.py);
- GEMM 128x1024x4096: llmc default schedule, llmc tuned (`llmc tune` records: an existing
  --tuning-db, or a fresh tuning run of --tune-budget), PyTorch: GFLOP/s and fraction of peak;
- GEMV 1x4096x4096 (decode): llmc and PyTorch, GB/s of weight streamed and fraction of the
  measured bandwidth.
The timed rounds are interleaved so that load from other processes hits every contender alike.

    python bench/roofline.py [--rounds 20] [--tune-budget 5m | --tuning-db DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine, read_bandwidth_gbs  # noqa: E402

THREADS = fair_environment()

import numpy as np  # noqa: E402


def interleaved(runners: dict, rounds: int, inner: int = 1, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each runner, rounds interleaved across runners."""
    for r in runners.values():
        for _ in range(warmup):
            r()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(rounds):
        for k, r in runners.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                r()
            times[k].append((time.perf_counter() - t0) / inner)
    return {k: float(np.median(v)) for k, v in times.items()}


def peak_gflops(rounds: int = 10, n: int = 2048) -> float:
    """fp32 GEMM n^3 in PyTorch: this machine's practical compute peak (GFLOP/s)."""
    import torch

    torch.set_num_threads(THREADS)
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = interleaved({"gemm": lambda: torch.matmul(a, b)}, rounds)["gemm"]
    return 2.0 * n ** 3 / t / 1e9


def triad_gbs(rounds: int = 10, n: int = 64 << 20) -> float:
    """STREAM triad a = b + 3*c over 3 x 256 MiB fp32 arrays (torch, all threads), GB/s."""
    import torch

    torch.set_num_threads(THREADS)
    b, c = torch.ones(n), torch.ones(n)
    a = torch.empty(n)
    t = interleaved({"triad": lambda: torch.add(b, c, alpha=3.0, out=a)}, rounds)["triad"]
    return 3 * 4 * n / t / 1e9


def read_gbs(rounds: int = 10, n: int = 64 << 20) -> float:
    """Read-only streaming bandwidth (bench.common.read_bandwidth_gbs): the GEMV's roof."""
    return read_bandwidth_gbs(THREADS, rounds, n)


def measure_machine(rounds: int = 10) -> dict:
    """Peak GFLOP/s and bandwidth (triad, the reference; read-only stream, the GEMV's roof;
    numpy copy, for comparison)."""
    from bench.llm import copy_bandwidth_gbs

    return {"peak_gflops": peak_gflops(rounds), "triad_gbs": triad_gbs(rounds),
            "read_gbs": read_gbs(rounds), "copy_gbs": copy_bandwidth_gbs()}


def fraction_rows(rows: list[dict], roof: dict) -> list[dict]:
    """Each workload's achieved GFLOP/s and GB/s (weights once per run) and its fraction of
    the roofline: compute-bound fraction of peak or memory-bound fraction of bandwidth,
    whichever roof the workload's arithmetic intensity puts it under."""
    out = []
    ridge = roof["peak_gflops"] / roof["triad_gbs"]  # FLOP per byte where the roofs meet
    for r in rows:
        flops, nbytes, ms = r.get("flops"), r.get("bytes"), r.get("llmc")
        if not flops or not ms:
            continue
        gflops = flops / (ms * 1e-3) / 1e9
        gbs = (nbytes or 0) / (ms * 1e-3) / 1e9
        intensity = flops / nbytes if nbytes else float("inf")
        bound = "compute" if intensity >= ridge else "memory"
        roof_gflops = min(roof["peak_gflops"], intensity * roof["triad_gbs"])
        out.append({"workload": r["workload"], "gflops": gflops, "gbs": gbs,
                    "intensity": intensity, "bound": bound,
                    "fraction_of_roof": gflops / roof_gflops})
    return out


def print_fractions(frac: list[dict], roof: dict) -> None:
    print(f"\nroofline: peak {roof['peak_gflops']:.1f} GFLOP/s (torch GEMM), bandwidth "
          f"{roof['triad_gbs']:.1f} GB/s (triad; numpy copy {roof['copy_gbs']:.1f} GB/s)")
    print("workload | llmc GFLOP/s | GB/s (weights) | FLOP/byte | bound | fraction of roof")
    print("--- | --- | --- | --- | --- | ---")
    for f in frac:
        print(f"{f['workload']} | {f['gflops']:.1f} | {f['gbs']:.1f} | {f['intensity']:.1f} | "
              f"{f['bound']} | {f['fraction_of_roof']:.0%}")


def gemm_gemv(rounds: int, tuning_db: str | None, tune_budget: str | None) -> dict:
    """GEMM 128x1024x4096 (default / tuned / torch) and GEMV 1x4096x4096 (llmc / torch)."""
    import torch

    from bench.matmul import llmc_matmul, matmul_graph

    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    out: dict = {}
    M, K, N = 128, 1024, 4096
    a = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)
    if tune_budget and not tuning_db:
        from llmc.backends.x86.tune import tune_model

        tuning_db = tempfile.mkdtemp(prefix="llmc-roofline-tune-")
        t0 = time.perf_counter()
        res = tune_model(matmul_graph(w, M), tuning_db, budget=tune_budget)
        out["tuning"] = {"seconds": time.perf_counter() - t0, "trials": res.trials,
                         "db": tuning_db, "rows": res.rows}
        print(res.format())
    runners = {}
    run, res = llmc_matmul(a, w)
    runners["llmc default"] = run
    if tuning_db:
        run_t, res_t = llmc_matmul(a, w, tuning_db=tuning_db)
        out["tuned_schedule"] = res_t.schedules
        err = float(np.abs(run_t()[0].numpy() - a @ w).max())
        out["tuned_max_abs_err"] = err
        runners["llmc tuned"] = run_t
    ta, tw = torch.from_numpy(a), torch.from_numpy(w)
    runners["pytorch"] = lambda: torch.matmul(ta, tw)
    t = interleaved(runners, rounds, inner=5)
    out["gemm"] = {k: {"ms": v * 1e3, "gflops": 2.0 * M * K * N / v / 1e9} for k, v in t.items()}

    K2 = N2 = 4096
    x = rng.standard_normal((1, K2), dtype=np.float32)
    w2 = rng.standard_normal((K2, N2), dtype=np.float32)
    run2, _ = llmc_matmul(x, w2)
    tx, tw2 = torch.from_numpy(x), torch.from_numpy(w2)
    # the read-only stream runs in the same interleaved rounds: this VM's bandwidth moves by
    # up to 1.7x between runs, so the GEMV's fraction is taken against bandwidth measured beside it
    stream = torch.ones(64 << 20)
    t2 = interleaved({"llmc": run2, "pytorch": lambda: torch.matmul(tx, tw2),
                      "read-only stream": lambda: torch.sum(stream)}, rounds, inner=5)
    out["gemv"] = {k: {"ms": v * 1e3, "gbs": w2.nbytes / v / 1e9}
                   for k, v in t2.items() if k != "read-only stream"}
    out["gemv_read_gbs"] = stream.numel() * 4 / t2["read-only stream"] / 1e9
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tuning-db", help="use these `llmc tune` records for the tuned GEMM")
    ap.add_argument("--tune-budget", help="tune the GEMM first for this long (e.g. 5m)")
    ap.add_argument("--json")
    args = ap.parse_args()

    roof = measure_machine(max(5, args.rounds // 2))
    kern = gemm_gemv(args.rounds, args.tuning_db, args.tune_budget)
    print(f"machine: {machine()}; load: {os.getloadavg()}")
    print(f"peak {roof['peak_gflops']:.1f} GFLOP/s (torch 2048^3 GEMM); bandwidth "
          f"{roof['triad_gbs']:.1f} GB/s triad, {roof['read_gbs']:.1f} GB/s read-only, "
          f"{roof['copy_gbs']:.1f} GB/s numpy copy; "
          f"median of {args.rounds} interleaved rounds")
    print("\nGEMM 128x1024x4096 | ms | GFLOP/s | of peak | vs PyTorch")
    ref = kern["gemm"]["pytorch"]["gflops"]
    for k, v in kern["gemm"].items():
        print(f"{k} | {v['ms']:.3f} | {v['gflops']:.1f} | {v['gflops'] / roof['peak_gflops']:.0%} "
              f"| {v['gflops'] / ref:.2f}x")
    if "tuned_schedule" in kern:
        print(f"tuned build: {kern['tuned_schedule']} (max abs err {kern['tuned_max_abs_err']:.1e})")
    rd = kern["gemv_read_gbs"]
    print(f"\nGEMV 1x4096x4096 | ms | GB/s (weights) | of read-only bandwidth in the same rounds "
          f"({rd:.1f} GB/s) | of triad")
    for k, v in kern["gemv"].items():
        print(f"{k} | {v['ms']:.3f} | {v['gbs']:.1f} | {v['gbs'] / rd:.0%} "
              f"| {v['gbs'] / roof['triad_gbs']:.0%}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "load": os.getloadavg(), "roof": roof, **kern}, fh,
                      indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
