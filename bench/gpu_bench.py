"""llmc --target cuda against PyTorch CUDA (eager, torch.compile) and ONNX Runtime's CUDA provider.

Workloads (the bench models): MiniLM (real weights, fp32, batch 1 and 8, seq 128), the GPT-2
block in fp16 (batch 8, seq 128: tensor-core matmuls) and one fp16 GEMM and one decode GEMV with
constant weights. Each peer is timed on device-resident inputs, synchronized, median of N.
Every row also records llmc's max abs error against PyTorch. Peers that are not installed (or
have no CUDA) print "n/a" with the reason in the results file.

Usage:
  python bench/gpu_bench.py [--repeat 50] [--json results.json] [--budget-s 300]
  python bench/gpu_bench.py --prebuild DIR    # compile the llmc artifacts only (no GPU needed)
  python bench/gpu_bench.py --artifacts DIR   # use artifacts built elsewhere (no nvcc needed)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import print_table  # noqa: E402

import numpy as np  # noqa: E402

PEERS = ["llmc", "torch_eager", "torch_compile", "ort_cuda"]


def gpu_name() -> str:
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    import tvm.runtime
    dev = tvm.runtime.cuda(0)
    return f"CUDA device sm_{dev.compute_version.replace('.', '')}" if dev.exist else "no GPU"


# ----------------------------------------------------------------------------- workloads
def workloads() -> list[dict]:
    """name, torch module, example inputs (CPU tensors), onnx path or None, atol."""
    import torch

    from tests import models

    out = []
    try:  # the real weights ship in a pip package that an offline GPU machine may lack
        mini, label = models.minilm("eager"), "minilm"
        path = str(models.minilm_onnx())
    except (ImportError, ModuleNotFoundError, OSError) as exc:
        print(f"[gpu_bench] real MiniLM unavailable ({type(exc).__name__}): using its "
              "architecture with random weights", flush=True)
        mini, label, path = models.minilm_shaped(), "minilm-shaped(random)", None
    for b in (1, 8):
        g = torch.Generator().manual_seed(b)
        ids = torch.randint(0, 30000, (b, 128), generator=g)
        mask = torch.ones(b, 128, dtype=torch.int64)
        out.append({"name": f"{label} fp32 b{b} s128", "module": mini, "inputs": (ids, mask),
                    "onnx": path, "names": ["input_ids", "attention_mask"], "atol": 2e-3,
                    "same_artifact": "minilm"})
    out.append({"name": "gpt2_block fp16 b8 s128", "module": models.gpt2_block().half(),
                "inputs": (models.gpt2_input(batch=8, seq=128).half(),), "onnx": None,
                "names": ["x"], "atol": 5e-2})

    class Linear(torch.nn.Module):
        def __init__(self, k: int, n: int) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(k, n, generator=torch.Generator().manual_seed(1))
                                        / k ** 0.5)

        def forward(self, x):
            return x @ self.w

    gemm = Linear(4096, 4096).half().eval()
    out.append({"name": "gemm fp16 2048x4096x4096", "module": gemm,
                "inputs": (torch.randn(2048, 4096).half(),), "onnx": None, "names": ["x"],
                "atol": 5e-2})
    out.append({"name": "gemv fp16 1x4096x4096 (decode)", "module": gemm,
                "inputs": (torch.randn(1, 4096).half(),), "onnx": None, "names": ["x"],
                "atol": 5e-2})
    return out


def artifact_name(w: dict) -> str:
    return w.get("same_artifact") or "".join(c if c.isalnum() else "_" for c in w["name"])


def _compile(model, inputs, arch):
    import llmc

    return llmc.compile(model, target="cuda", example_inputs=inputs, arch=arch)


# ----------------------------------------------------------------------------- peers
def time_cuda(fn, repeat: int, sync) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def bench_llmc(model, w: dict, repeat: int) -> tuple[float, np.ndarray]:
    arrays = [t.numpy() if str(t.dtype) != "torch.bfloat16" else t.float().numpy()
              for t in w["inputs"]]
    out = list(model.run(*arrays).values())[0]
    stats = model.benchmark(*arrays, repeat=repeat)
    return stats["median_ms"], out


def bench_torch(w: dict, repeat: int, compiled: bool):
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch has no CUDA (CPU-only wheel?)")
    mod = w["module"].cuda()
    ins = tuple(t.cuda() for t in w["inputs"])
    fn = torch.compile(mod) if compiled else mod
    with torch.inference_mode():
        out = fn(*ins)
        ms = time_cuda(lambda: fn(*ins), repeat, torch.cuda.synchronize)
    out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "last_hidden_state", out)
    w["module"].cpu()
    return ms, out.float().cpu().numpy()


def bench_ort(w: dict, repeat: int) -> float:
    if not w.get("onnx"):
        raise RuntimeError("no ONNX export for this workload")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    sess = ort.InferenceSession(w["onnx"], providers=["CUDAExecutionProvider"])
    feeds = {n: t.numpy() for n, t in zip(w["names"], w["inputs"])}
    io = sess.io_binding()
    for n, a in feeds.items():
        io.bind_ortvalue_input(n, ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0))
    for o in sess.get_outputs():
        io.bind_output(o.name, "cuda")
    return time_cuda(lambda: sess.run_with_iobinding(io), repeat, lambda: None)


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--json", default="bench/results/gpu_bench.json")
    ap.add_argument("--arch", default=None, help="sm_80|sm_86|sm_89|sm_90 (default: local GPU)")
    ap.add_argument("--prebuild", help="only compile the llmc artifacts into this folder")
    ap.add_argument("--artifacts", help="load artifacts from this folder instead of compiling")
    ap.add_argument("--only", help="run only workloads whose name contains this text")
    ap.add_argument("--budget-s", type=float, default=360.0, help="stop starting new workloads "
                    "after this many seconds")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import llmc

    ws = [w for w in workloads() if not args.only or args.only in w["name"]]
    if args.prebuild:
        os.makedirs(args.prebuild, exist_ok=True)
        done = set()
        for w in ws:
            name = artifact_name(w)
            if name in done:
                continue
            t0 = time.perf_counter()
            art = _compile(w["onnx"] or w["module"], None if w["onnx"] else w["inputs"],
                           args.arch or "sm_80")
            art.save(os.path.join(args.prebuild, name + ".llmc"))
            done.add(name)
            print(f"built {name}.llmc in {time.perf_counter() - t0:.1f} s", flush=True)
        return 0

    rows, notes = [], {}
    loaded: dict = {}
    for w in ws:
        if time.perf_counter() - t_start > args.budget_s:
            notes[w["name"]] = "skipped: time budget"
            continue
        row = {"workload": w["name"]}
        name = artifact_name(w)
        try:
            if name not in loaded:
                t0 = time.perf_counter()
                if args.artifacts:
                    loaded[name] = llmc.load(os.path.join(args.artifacts, name + ".llmc"))
                else:
                    art = _compile(w["onnx"] or w["module"], None if w["onnx"] else w["inputs"],
                                   args.arch)
                    loaded[name] = art.load()
                row["llmc_compile_s"] = round(time.perf_counter() - t0, 2)
            row["llmc"], got = bench_llmc(loaded[name], w, args.repeat)
        except Exception as exc:
            notes[f"{w['name']} llmc"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            traceback.print_exc()
            got = None
        for peer, fn in (("torch_eager", lambda: bench_torch(w, args.repeat, False)),
                         ("torch_compile", lambda: bench_torch(w, args.repeat, True))):
            try:
                row[peer], ref = fn()
                if got is not None and peer == "torch_eager":
                    row["max_abs_err_vs_torch"] = float(np.abs(got.astype(np.float32) - ref).max())
                    row["close"] = bool(row["max_abs_err_vs_torch"] <= w["atol"] * max(
                        1.0, float(np.abs(ref).max())))
            except Exception as exc:
                notes[f"{w['name']} {peer}"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        try:
            row["ort_cuda"] = bench_ort(w, args.repeat)
        except Exception as exc:
            notes[f"{w['name']} ort_cuda"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        rows.append(row)
        print(f"{w['name']}: {row}", flush=True)

    print(f"GPU: {gpu_name()}")
    print_table(rows, PEERS)
    for k, v in notes.items():
        print(f"note: {k}: {v}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"gpu": gpu_name(), "rows": rows, "notes": notes,
                   "seconds": round(time.perf_counter() - t_start, 1)}, fh, indent=1)
    ok = all(r.get("close", True) for r in rows) and all("llmc" in r for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
