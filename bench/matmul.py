"""fp32 matmul 128x1024 @ 1024x4096: llmc's x86 build against PyTorch (GFLOP/s).

Runs llmc's packed, register-tiled kernel through the Relax VM (static M and symbolic M
compiled once) and torch.matmul, interleaving the timed rounds so that load from other
processes hits all of them alike; prints the median of N rounds of each.

    python bench/matmul.py [--rounds 15] [--m 128 --k 1024 --n 4096]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads collapse under load

import numpy as np  # noqa: E402


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def matmul_graph(w: np.ndarray, m_dim):
    """An llmc Graph computing x[m_dim, K] @ w (w a constant: llmc pre-packs it)."""
    from llmc.ir import Graph

    g = Graph("matmul")
    x = g.add_input("x", "float32", [m_dim, w.shape[0]])
    g.set_outputs(g.add_node("matmul", [x, g.add_constant(w, "w")]))
    return g


def llmc_matmul(a: np.ndarray, w: np.ndarray, m_dim=None, tuning_db: str | None = None):
    """(zero-argument runner of a @ w through llmc's x86 build and the Relax VM, BuildResult).

    Shared with bench/roofline.py; ``tuning_db`` builds with `llmc tune` records.
    """
    import tvm

    from llmc.backends import x86

    res = x86.build(matmul_graph(w, a.shape[0] if m_dim is None else m_dim), tuning_db=tuning_db)
    dev = tvm.cpu()
    fn = tvm.relax.VirtualMachine(res.executable, dev)["main"]
    targs = [tvm.runtime.tensor(a, dev)] + [tvm.runtime.tensor(res.params[p], dev)
                                            for p in res.param_names]
    return (lambda: fn(*targs)), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=128)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--inner", type=int, default=10, help="calls per timed round")
    args = ap.parse_args()

    import torch

    from llmc import dims as D
    from llmc.backends import x86

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    x86.set_num_threads(threads)
    M, K, N = args.m, args.k, args.n
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K), dtype=np.float32)
    w = rng.standard_normal((K, N), dtype=np.float32)

    runners = {}
    for label, m_dim in (("llmc static M", M), ("llmc symbolic M", D.sym("m"))):
        t0 = time.perf_counter()
        run, res = llmc_matmul(a, w, m_dim)
        build_s = time.perf_counter() - t0
        err = float(np.abs(run()[0].numpy() - a @ w).max())
        print(f"{label}: build {build_s:.2f} s, max abs err vs numpy {err:.2e}, "
              f"schedules {res.schedules}")
        runners[label] = run
    ta, tw = torch.from_numpy(a), torch.from_numpy(w)
    runners["torch.matmul"] = lambda: torch.matmul(ta, tw)

    for r in runners.values():  # warm up
        for _ in range(3):
            r()
    times = {k: [] for k in runners}
    for _ in range(args.rounds):
        for k, r in runners.items():
            t0 = time.perf_counter()
            for _ in range(args.inner):
                r()
            times[k].append((time.perf_counter() - t0) / args.inner)
    flops = 2.0 * M * K * N
    ref = statistics.median(times["torch.matmul"])
    print(f"\nfp32 matmul {M}x{K} @ {K}x{N}; {_machine()}; {threads} threads; "
          f"median of {args.rounds} rounds x {args.inner} calls")
    print(f"{'workload':<18}{'ms':>9}{'GFLOP/s':>10}{'vs torch':>10}")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k:<18}{med * 1e3:>9.3f}{flops / med / 1e9:>10.1f}{ref / med:>9.2f}x")


if __name__ == "__main__":
    main()
