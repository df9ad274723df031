"""int8 weight-only kernels, per-channel vs group-wise vs fp32: the M=1 GEMV (``--rows``: M).

Why: group-wise int8 must cost about what per-channel costs on the memory-bound decode path
(the scales add K/G * N * 4 bytes). Kernels are timed interleaved (round robin, one sample of
``--inner`` calls per variant per round) so load changes hit every variant alike; prints the
median of ``--repeat`` rounds and the load average.

    TVM_NUM_THREADS=1 python bench/int8_groups.py --repeat 25
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _graph(k: int, n: int, variant: str, rng, rows: int = 1):
    from llmc.ir import Graph
    from llmc.ops.quant_w8 import quantize_weight_int8_wo, quantize_weight_int8_wo_grouped

    g = Graph(f"gemv_{variant}")
    x = g.add_input("x", "float32", [rows, k])
    w = rng.standard_normal((k, n)).astype(np.float32)
    if variant == "fp32":
        out = g.add_node("matmul", [x, g.add_constant(w, "w")])
    elif variant == "int8":
        p, s = quantize_weight_int8_wo(w)
        out = g.add_node("qlinear_int8_wo", [x, g.add_constant(p, "w"), g.add_constant(s, "s")],
                         {"n": n, "k": k})
    else:
        gs = int(variant.split("g")[-1])
        p, s = quantize_weight_int8_wo_grouped(w, gs)
        out = g.add_node("qlinear_int8_wo_grouped",
                         [x, g.add_constant(p, "w"), g.add_constant(s, "s")],
                         {"n": n, "k": k, "group_size": gs})
    g.set_outputs(out)
    return g


def _callable(g):
    """A no-argument function running the built kernel once on preallocated tensors."""
    import tvm
    from tvm import relax

    from llmc.backends import x86

    r = x86.build(g)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(r.executable, dev)
    x = np.random.default_rng(1).standard_normal(tuple(g.types[g.inputs[0]].shape))
    args = [tvm.runtime.tensor(x.astype(np.float32), dev)]
    params = {**g.constants, **(r.params or {})}
    args += [tvm.runtime.tensor(np.ascontiguousarray(params[p]), dev) for p in r.param_names]
    fn = vm["main"]
    return lambda: fn(*args), r.schedules


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=25)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--rows", type=int, default=1, help="M (1: the decode GEMV)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')}, load {os.getloadavg()}")
    for k, n in ((576, 1536), (576, 49152), (1536, 576)):
        variants = ["fp32", "int8"] + [f"int8/g{gs}" for gs in (128, 64, 32) if k % gs == 0]
        fns = {}
        for v in variants:
            fns[v], sched = _callable(_graph(k, n, v, rng, args.rows))
            print(f"{args.rows}x{k}x{n} {v}: {sched}")
            for _ in range(3):
                fns[v]()
        times = {v: [] for v in variants}
        for _ in range(args.repeat):
            for v in variants:
                t0 = time.perf_counter()
                for _ in range(args.inner):
                    fns[v]()
                times[v].append((time.perf_counter() - t0) * 1e3 / args.inner)
        med = {v: float(np.median(times[v])) for v in variants}
        for v in variants:
            wbytes = k * n * (4 if v == "fp32" else 1)
            if v == "int8":
                wbytes += 4 * n
            elif v.startswith("int8/g"):
                wbytes += 4 * n * k // int(v.split("g")[-1])
            gbs = wbytes / med[v] / 1e6
            print(f"{args.rows}x{k}x{n} {v:10s} {med[v]:8.4f} ms  ({gbs:6.1f} GB/s of weights, "
                  f"{med[v] / med['int8']:.2f}x per-channel)")
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
