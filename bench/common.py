"""Shared benchmark plumbing: machine description, fair timing, and the results table."""
from __future__ import annotations

import os
import platform
import sys
import time
from typing import Callable

import numpy as np


def machine() -> str:
    """One line naming the CPU, cores and the thread settings every peer runs with."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}, "
            f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')}, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")


def threads_flag() -> int | None:
    """``--threads N`` read from argv before the heavy imports (thread pools size themselves
    when the libraries load, so the benchmark scripts must set the environment first)."""
    for i, a in enumerate(sys.argv[:-1]):
        if a == "--threads":
            return int(sys.argv[i + 1])
    return None


def fair_environment(threads: int | None = None) -> int:
    """Give every peer the same thread count and non-spinning OpenMP (set before imports)."""
    threads = threads or os.cpu_count() or 1
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TVM_NUM_THREADS", str(threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    return threads


def median_ms(fn: Callable[[], object], repeat: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def print_table(rows: list[dict], peers: list[str], base: str = "onnxruntime") -> None:
    """workload | each peer's median ms | llmc's ratio to each peer (>1 means llmc is slower)."""
    head = ["workload"] + [f"{p} ms" for p in peers] + [f"llmc/{p}" for p in peers if p != "llmc"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        cells = [r["workload"]] + [f"{r[p]:.2f}" if r.get(p) is not None else "n/a" for p in peers]
        cells += [f"{r['llmc'] / r[p]:.2f}x" if r.get(p) and r.get("llmc") else "n/a"
                  for p in peers if p != "llmc"]
        print(" | ".join(cells))


def read_bandwidth_gbs(threads: int, repeat: int = 10, n: int = 64 << 20) -> float:
    """Read-only streaming bandwidth: a sum over a 256 MiB fp32 array (torch, ``threads``
    threads), GB/s, median of ``repeat``. A GEMV (LLM decode) only reads its weights, so this
    is its roof; a copy or triad also pays for writes."""
    import torch

    torch.set_num_threads(threads)
    b = torch.ones(n)
    return 4 * n / (median_ms(lambda: torch.sum(b), repeat) / 1e3) / 1e9


def ort_session(path: str, threads: int, spinning: bool = False):
    """The ONNX Runtime CPU session every bench script compares against: all graph
    optimizations, ``threads`` intra-op threads, one inter-op thread.

    ``spinning`` False (the default, as OMP_WAIT_POLICY=PASSIVE for the OpenMP peers): ORT's
    own pool ignores OMP_WAIT_POLICY and would keep spinning after a run, taxing the next peer
    of a round. bench/minilm.py and bench/fusion.py keep it on: they alternate peers call by
    call on MiniLM at batch 1, where a sleeping pool pays a wake-up per op (measured in
    fusion.py: ORT 17.8 ms spinning vs 33.5 ms not; suite.py's per-peer rounds: 22 ms)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
