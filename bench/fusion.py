"""Fusion on x86: kernels launched, latency and memory at -O0 vs -O3, ONNX Runtime beside them.

Workloads: MiniLM (real weights) at batch 1 and 8, seq 128; a GPT-2-style block (dim 768,
12 heads: GPT-2 small's sizes) at batch 1, seq 128. For each: kernel launches per run, the
median latency of N runs (the three peers timed round-robin, so machine load hits them
alike), the memory plan's arena vs the sum of all intermediates, and ONNX Runtime
(ORT_ENABLE_ALL) on the same ONNX file with the same thread count.
Usage: python bench/fusion.py [--repeat 20] [--json out.json] [--only minilm|gpt2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine  # noqa: E402

THREADS = fair_environment(int(os.environ.get("TVM_NUM_THREADS", "0")) or None)

import numpy as np  # noqa: E402


def _runner(result):
    """A zero-argument callable running the built module on fixed device arrays."""
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(result.executable, dev)
    fn = vm["main"]

    def bind(inputs):
        args = [tvm.runtime.tensor(np.ascontiguousarray(inputs[n]), dev)
                for n in result.input_names]
        args += [tvm.runtime.tensor(p if p.ndim == 0 else np.ascontiguousarray(p), dev)
                 for p in (result.params[n] for n in result.param_names)]
        return lambda: fn(*args), lambda: [o.numpy() for o in fn(*args)]
    return bind


def _round_robin(fns: dict, repeat: int, warmup: int = 3) -> dict:
    """Median ms of each callable, timed in interleaved rounds."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def bench_model(label: str, path: str, feeds: list[tuple[str, dict, dict]], repeat: int
                ) -> list[dict]:
    """Build ``path`` at O0 and O3 once (symbolic dims) and time each feed."""
    import onnxruntime as ort

    from llmc.backends import x86
    from llmc.frontends.onnx import import_onnx
    from llmc.passes import plan_memory, run_passes

    x86.set_num_threads(THREADS)
    g = import_onnx(path)
    built = {}
    for lvl in ("O0", "O3"):
        go, _ = run_passes(g, lvl)
        t0 = time.perf_counter()
        built[lvl] = (go, x86.build(go), time.perf_counter() - t0)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    rows = []
    for name, inputs, dims in feeds:
        fns, row = {}, {"workload": f"{label} {name}"}
        ref = sess.run(None, inputs)[0]
        for lvl, (go, res, build_s) in built.items():
            run, get = _runner(res)(inputs)
            row[f"err_{lvl}"] = float(np.abs(get()[0] - ref).max())
            plan = plan_memory(go, dims)
            row[f"launches_{lvl}"] = res.launches
            row[f"nodes_{lvl}"] = len(go.nodes)
            row[f"arena_{lvl}"] = plan.arena_bytes
            row[f"intermediates_{lvl}"] = plan.total_bytes
            row[f"build_s_{lvl}"] = round(build_s, 1)
            fns[lvl] = run
        fns["ort"] = lambda: sess.run(None, inputs)
        row.update({f"ms_{k}": v for k, v in _round_robin(fns, repeat).items()})
        rows.append(row)
    return rows


def _minilm(repeat: int) -> list[dict]:
    from tests.models import minilm_onnx

    feeds = []
    for b in (1, 8):
        rng = np.random.default_rng(b)
        feeds.append((f"b{b} s128",
                      {"input_ids": rng.integers(0, 30000, (b, 128), dtype=np.int64),
                       "attention_mask": np.ones((b, 128), np.int64)},
                      {"batch": b, "seq": 128}))
    return bench_model("minilm", str(minilm_onnx()), feeds, repeat)


def _gpt2(repeat: int) -> list[dict]:
    import torch

    from tests.models import export_onnx, gpt2_block, gpt2_input

    dim, heads = 768, 12
    with tempfile.TemporaryDirectory() as tmp:
        x = gpt2_input(batch=1, seq=128, dim=dim)
        path = export_onnx(gpt2_block(dim, heads), (x,), os.path.join(tmp, "gpt2_block.onnx"),
                           ["x"], ["y"], dynamic_axes={"x": {0: "batch", 1: "seq"}})
        with torch.no_grad():
            pass
        return bench_model(f"gpt2_block d{dim}", str(path),
                           [("b1 s128", {"x": x.numpy()}, {"batch": 1, "seq": 128})], repeat)


def print_rows(rows: list[dict]) -> None:
    head = ["workload", "kernels O0", "kernels O3", "O0 ms", "O3 ms", "ORT ms", "O3/ORT",
            "arena O0 KiB", "arena O3 KiB", "sum intermediates O0/O3 KiB", "max err O3"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(" | ".join([
            r["workload"], str(r["launches_O0"]), str(r["launches_O3"]), f"{r['ms_O0']:.2f}",
            f"{r['ms_O3']:.2f}", f"{r['ms_ort']:.2f}", f"{r['ms_O3'] / r['ms_ort']:.2f}x",
            f"{r['arena_O0'] / 1024:.0f}", f"{r['arena_O3'] / 1024:.0f}",
            f"{r['intermediates_O0'] / 1024:.0f} / {r['intermediates_O3'] / 1024:.0f}",
            f"{r['err_O3']:.1e}"]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--only", choices=["minilm", "gpt2"])
    args = ap.parse_args()
    rows = []
    if args.only in (None, "minilm"):
        rows += _minilm(args.repeat)
    if args.only in (None, "gpt2"):
        rows += _gpt2(args.repeat)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} (1 min)")
    print_rows(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "load": os.getloadavg(), "rows": rows}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
