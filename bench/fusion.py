"""Fusion on x86: kernels launched, latency and memory at -O0 vs -O3, ONNX Runtime beside them.

Workloads: MiniLM (real weights) at batch 1 and 8, seq 128; a GPT-2-style block (dim 768,
12 heads: GPT-2 small's sizes) at batch 1, seq 128; the ResNet-style CNN of tests/models.py
(widths 16 and 64, 32x32 input) at batch 1 and 8, at O0, O3 in NCHW and O3 in NCHW16c (the
layout pass), beside ONNX Runtime and PyTorch. For each: kernel launches per run, the
median latency of N runs (the three peers timed round-robin, so machine load hits them
alike), the memory plan's arena vs the sum of all intermediates, and ONNX Runtime
(ORT_ENABLE_ALL) on the same ONNX file with the same thread count.
Usage: python bench/fusion.py [--repeat 20] [--json out.json] [--only minilm|gpt2|cnn]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine, ort_session  # noqa: E402

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


def _round_robin_cpu(fns: dict, repeat: int, warmup: int = 3) -> tuple[dict, dict]:
    """Median wall ms and median process-CPU ms of each callable, interleaved rounds.

    CPU time is the load-robust figure on a shared machine: a peer whose threads are
    descheduled (or spin waiting for one that is) shows it there, not only in wall time.
    """
    for f in fns.values():
        for _ in range(warmup):
            f()
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            f()
            wall[k].append((time.perf_counter() - t0) * 1e3)
            cpu[k].append((time.process_time() - c0) * 1e3)
    med = lambda d: {k: float(np.median(v)) for k, v in d.items()}  # noqa: E731
    return med(wall), med(cpu)


def bench_model(label: str, path: str, feeds: list[tuple], repeat: int) -> list[dict]:
    """Build ``path`` at O0 and O3 once (symbolic dims) and time each feed.

    A feed is (name, inputs, dims) or (name, inputs, dims, torch_fn): with ``torch_fn``
    (a zero-argument PyTorch call of the same model) PyTorch joins the round-robin.
    """
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
    sess = ort_session(path, THREADS, spinning=True)
    rows = []
    for name, inputs, dims, *torch_fn in feeds:
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
        fns["ort"] = lambda inputs=inputs: sess.run(None, inputs)
        if torch_fn:
            fns["torch"] = torch_fn[0]
        wall, cpu = _round_robin_cpu(fns, repeat)
        row.update({f"ms_{k}": v for k, v in wall.items()})
        row.update({f"cpu_ms_{k}": v for k, v in cpu.items()})
        row["load"] = os.getloadavg()[0]
        rows.append(row)
    return rows


def _torch_call(model, args: tuple, kwargs: dict | None = None):
    """A zero-argument no-grad PyTorch call (PyTorch with the same thread count)."""
    import torch

    torch.set_num_threads(THREADS)

    def run():
        with torch.inference_mode():
            model(*args, **(kwargs or {}))
    return run


def _minilm(repeat: int) -> list[dict]:
    import torch

    from tests.models import minilm, minilm_onnx

    tmodel = minilm()
    feeds = []
    for b in (1, 8):
        rng = np.random.default_rng(b)
        inputs = {"input_ids": rng.integers(0, 30000, (b, 128), dtype=np.int64),
                  "attention_mask": np.ones((b, 128), np.int64)}
        tin = {k: torch.from_numpy(v) for k, v in inputs.items()}
        feeds.append((f"b{b} s128", inputs, {"batch": b, "seq": 128},
                      _torch_call(tmodel, (), tin)))
    return bench_model("minilm", str(minilm_onnx()), feeds, repeat)


def _gpt2(repeat: int) -> list[dict]:
    import torch

    from tests.models import export_onnx, gpt2_block, gpt2_input

    dim, heads = 768, 12
    with tempfile.TemporaryDirectory() as tmp:
        x = gpt2_input(batch=1, seq=128, dim=dim)
        block = gpt2_block(dim, heads)
        path = export_onnx(block, (x,), os.path.join(tmp, "gpt2_block.onnx"),
                           ["x"], ["y"], dynamic_axes={"x": {0: "batch", 1: "seq"}})
        return bench_model(f"gpt2_block d{dim}", str(path),
                           [("b1 s128", {"x": x.numpy()}, {"batch": 1, "seq": 128},
                             _torch_call(block, (torch.from_numpy(x.numpy()),)))], repeat)


def _cnn(repeat: int, widths: tuple = (16, 64)) -> list[dict]:
    """The ResNet-style CNN of tests/models.py: NCHW vs NCHW16c (the layout pass) vs peers.

    Builds O0, O3 without the layout pass (NCHW convs, conv epilogues fused) and O3 with it
    (NCHW16c), each once for a symbolic batch; times them with ONNX Runtime and PyTorch
    (same thread count) round-robin at batch 1 and 8.
    """
    import torch

    from llmc.backends import x86
    from llmc.frontends.onnx import import_onnx
    from llmc.passes import run_passes
    from llmc.passes.layout import count_transforms, layout_options
    from tests.models import export_onnx, resnet_cnn, resnet_input

    x86.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)
    rows = []
    for width in widths:
        model = resnet_cnn(width=width)
        with tempfile.TemporaryDirectory() as tmp:
            path = str(export_onnx(model, (resnet_input(2),), os.path.join(tmp, "cnn.onnx"),
                                   ["x"], ["logits"], dynamic_axes={"x": {0: "batch"}}))
            g = import_onnx(path)
            built = {}
            for label, lvl, target in (("O0", "O0", None), ("nchw", "O3", None),
                                       ("nchw16c", "O3", "x86")):
                with layout_options(target):
                    go, _ = run_passes(g, lvl)
                t0 = time.perf_counter()
                built[label] = (go, x86.build(go), time.perf_counter() - t0)
            sess = ort_session(path, THREADS, spinning=True)
            for b in (1, 8):
                x = resnet_input(b, seed=b)
                inputs = {"x": x.numpy()}
                with torch.no_grad():
                    ref = model(x).numpy()
                row: dict = {"workload": f"resnet_cnn w{width} b{b} 32x32"}
                fns = {}
                for label, (go, res, build_s) in built.items():
                    run, get = _runner(res)(inputs)
                    row[f"err_{label}"] = float(np.abs(get()[0] - ref).max())
                    row[f"launches_{label}"] = res.launches
                    row[f"transforms_{label}"] = count_transforms(go)
                    row[f"build_s_{label}"] = round(build_s, 1)
                    fns[label] = run
                fns["ort"] = lambda: sess.run(None, inputs)

                def torch_run(x=x):
                    with torch.no_grad():
                        model(x)
                fns["torch"] = torch_run
                row.update({f"ms_{k}": v for k, v in _round_robin(fns, repeat).items()})
                rows.append(row)
    return rows


def print_cnn_rows(rows: list[dict]) -> None:
    """One line per CNN workload: kernels, latency of each variant and peer, ratios."""
    head = ["workload", "kernels O0/NCHW/16c", "layout transforms", "O0 ms", "O3 NCHW ms",
            "O3 NCHW16c ms", "ORT ms", "PyTorch ms", "16c/NCHW", "16c/ORT", "16c/PyTorch",
            "max err 16c"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(" | ".join([
            r["workload"], f"{r['launches_O0']}/{r['launches_nchw']}/{r['launches_nchw16c']}",
            str(r["transforms_nchw16c"]), f"{r['ms_O0']:.2f}", f"{r['ms_nchw']:.2f}",
            f"{r['ms_nchw16c']:.2f}", f"{r['ms_ort']:.2f}", f"{r['ms_torch']:.2f}",
            f"{r['ms_nchw16c'] / r['ms_nchw']:.2f}x", f"{r['ms_nchw16c'] / r['ms_ort']:.2f}x",
            f"{r['ms_nchw16c'] / r['ms_torch']:.2f}x", f"{r['err_nchw16c']:.1e}"]))


def print_rows(rows: list[dict]) -> None:
    """Wall medians (and ratios) of every peer, the CPU-time ratio to ORT, kernels, memory."""
    head = ["workload", "kernels O0", "kernels O3", "O0 ms", "O3 ms", "ORT ms", "PyTorch ms",
            "O3/ORT", "O3/PyTorch", "O3/ORT CPU time", "load",
            "arena O0 KiB", "arena O3 KiB", "sum intermediates O0/O3 KiB", "max err O3"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        pt = r.get("ms_torch")
        print(" | ".join([
            r["workload"], str(r["launches_O0"]), str(r["launches_O3"]), f"{r['ms_O0']:.2f}",
            f"{r['ms_O3']:.2f}", f"{r['ms_ort']:.2f}", f"{pt:.2f}" if pt else "n/a",
            f"{r['ms_O3'] / r['ms_ort']:.2f}x", f"{r['ms_O3'] / pt:.2f}x" if pt else "n/a",
            f"{r['cpu_ms_O3'] / r['cpu_ms_ort']:.2f}x", f"{r['load']:.1f}",
            f"{r['arena_O0'] / 1024:.0f}", f"{r['arena_O3'] / 1024:.0f}",
            f"{r['intermediates_O0'] / 1024:.0f} / {r['intermediates_O3'] / 1024:.0f}",
            f"{r['err_O3']:.1e}"]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--only", choices=["minilm", "gpt2", "cnn"])
    ap.add_argument("--cnn-widths", default="16,64", help="ResNet-style CNN widths (cnn)")
    args = ap.parse_args()
    rows = []
    if args.only in (None, "minilm"):
        rows += _minilm(args.repeat)
    if args.only in (None, "gpt2"):
        rows += _gpt2(args.repeat)
    cnn_rows = []
    if args.only in (None, "cnn"):
        cnn_rows = _cnn(args.repeat, tuple(int(w) for w in args.cnn_widths.split(",")))
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} (1 min)")
    if rows:
        print_rows(rows)
    if cnn_rows:
        print_cnn_rows(cnn_rows)
        rows += cnn_rows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "load": os.getloadavg(), "rows": rows}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
