"""The x86 benchmark suite: llmc against ONNX Runtime, PyTorch eager, torch.compile, TVM's own
Relax pipeline and OpenVINO, on the same inputs, in one run.

Workloads (fp32, static shapes): a transformer MLP block; MiniLM (real all-MiniLM-L6-v2
weights) at batch 1 and 8, sequence 128; a GPT-2-small-size decoder (12 layers, width 768,
12 heads, final norm and a 50257-way LM head on the last position; random weights): prefill of
128 tokens and one decode step against a 128-token KV cache; a ResNet-style CNN.

Every workload is one ONNX file (exported once, cached in .llmc-cache/bench) that llmc, ONNX
Runtime (ORT_ENABLE_ALL), TVM (relax.frontend.onnx, ``tvm.compile`` for llvm with TVM's
bundled dlight CPU rules) and OpenVINO (f32 inference precision) compile, and one nn.Module
that PyTorch runs eagerly and through ``torch.compile``. Timed rounds are interleaved across
the peers (load hits all alike); the table gives the median of N and each peer's ratio to ONNX
Runtime (< 1 = faster than ORT). A peer that fails to build or run is n/a with its reason.
Writes JSON and a PNG chart (default .llmc-cache/bench/suite.{json,png}); ``--roofline``
adds each workload's fraction of this machine's measured roofline (bench/roofline.py).

    python bench/suite.py [--repeat 20] [--workloads mlp,minilm-b1,...] [--peers llmc,onnxruntime,..]
                          [--tuning-db DIR] [--json OUT.json] [--png OUT.png] [--roofline]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine, ort_session  # noqa: E402

THREADS = fair_environment()

import numpy as np  # noqa: E402

PEERS = ["llmc", "onnxruntime", "pytorch", "torch.compile", "tvm-relax", "openvino"]
WORKLOADS = ["mlp", "minilm-b1", "minilm-b8", "gpt2-prefill128", "gpt2-decode1@128", "resnet-cnn"]
CACHE = Path(__file__).resolve().parent.parent / ".llmc-cache" / "bench"


# ----------------------------------------------------------------------------- models
def _torch_models():
    """The GPT-2-size decoder and MLP modules (defined lazily: torch is imported here)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from tests.models import GPT2Block

    class MLPBlock(nn.Module):
        """Transformer MLP: x + W2 gelu(W1 layernorm(x))."""

        def __init__(self, dim: int = 1024, hidden: int = 4096) -> None:
            super().__init__()
            self.ln = nn.LayerNorm(dim)
            self.fc1 = nn.Linear(dim, hidden)
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            return x + self.fc2(F.gelu(self.fc1(self.ln(x)), approximate="tanh"))

    class Decoder(nn.Module):
        """GPT-2-small-size decoder on embeddings: 12 blocks, final norm, LM head on the last
        position (prefill: ``forward(x)``, x [B, T, 768] -> logits [B, vocab])."""

        def __init__(self, layers: int = 12, dim: int = 768, heads: int = 12,
                     vocab: int = 50257) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.blocks = nn.ModuleList(GPT2Block(dim, heads, max_len=256) for _ in range(layers))
            self.ln_f = nn.LayerNorm(dim)
            self.lm_head = nn.Linear(dim, vocab, bias=False)
            self.heads, self.dim = heads, dim

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return self.lm_head(self.ln_f(x[:, -1]))

    class DecodeStep(nn.Module):
        """One decode step of :class:`Decoder`: x [1, 1, 768] and the KV cache of the previous
        tokens (past_k/past_v [layers, 1, heads, ctx, head_dim]) -> logits [1, vocab]."""

        def __init__(self, dec: Decoder) -> None:
            super().__init__()
            self.dec = dec

        def forward(self, x, past_k, past_v):
            d = self.dec
            c, h = d.dim, d.heads
            hd = c // h
            for i, b in enumerate(d.blocks):
                q, k, v = b.c_attn(b.ln_1(x)).split(c, dim=2)
                q = q.view(1, 1, h, hd).transpose(1, 2)
                k = torch.cat([past_k[i], k.view(1, 1, h, hd).transpose(1, 2)], dim=2)
                v = torch.cat([past_v[i], v.view(1, 1, h, hd).transpose(1, 2)], dim=2)
                att = F.softmax((q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)), dim=-1)
                y = (att @ v).transpose(1, 2).reshape(1, 1, c)
                x = x + b.c_proj(y)
                x = x + b.mlp_proj(F.gelu(b.c_fc(b.ln_2(x)), approximate="tanh"))
            return d.lm_head(d.ln_f(x[:, -1]))

    return MLPBlock, Decoder, DecodeStep


@dataclass
class Workload:
    """One benchmark: an nn.Module, its ONNX export and the inputs every peer runs on."""

    name: str
    module: object
    onnx: Path
    inputs: dict[str, np.ndarray]
    output: str
    flops: float = 0.0
    bytes: float = 0.0
    notes: list[str] = field(default_factory=list)


def _export(module, inputs: dict[str, np.ndarray], name: str, output: str) -> Path:
    """Static-shape ONNX export, cached by name."""
    import torch

    from tests.models import export_onnx

    path = CACHE / f"{name}.onnx"
    if path.is_file() and path.stat().st_size > 0:
        return path
    tmp = CACHE / f"{name}.{os.getpid()}.tmp.onnx"
    export_onnx(module, tuple(torch.from_numpy(v) for v in inputs.values()), tmp,
                list(inputs), [output])
    os.replace(tmp, path)
    return path


def _count(module, inputs: dict[str, np.ndarray]) -> tuple[float, float]:
    """(FLOPs of one run by torch's flop counter, bytes: parameters + inputs read once)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        module(*(torch.from_numpy(v) for v in inputs.values()))
    nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
    return float(fc.get_total_flops()), float(nbytes + sum(v.nbytes for v in inputs.values()))


def make_workloads(names: list[str]) -> list[Workload]:
    """Build (and export once) the requested workloads."""
    from tests.models import minilm, minilm_onnx, resnet_cnn

    CACHE.mkdir(parents=True, exist_ok=True)
    MLPBlock, Decoder, DecodeStep = _torch_models()
    rng = np.random.default_rng(0)
    out = []
    decoder = None
    for name in names:
        if name == "mlp":
            import torch
            torch.manual_seed(0)
            mod = MLPBlock().eval()
            inputs = {"x": rng.standard_normal((128, 1024), dtype=np.float32)}
            w = Workload("mlp 128x1024-4096-1024", mod, _export(mod, inputs, "mlp", "y"), inputs, "y")
        elif name.startswith("minilm-b"):
            b = int(name.split("b")[-1])
            inputs = {"input_ids": rng.integers(0, 30000, (b, 128), dtype=np.int64),
                      "attention_mask": np.ones((b, 128), np.int64)}
            w = Workload(f"minilm b{b} s128", minilm(), minilm_onnx(), inputs, "last_hidden_state")
        elif name.startswith("gpt2"):
            decoder = decoder or Decoder().eval()
            if name == "gpt2-prefill128":
                inputs = {"x": rng.standard_normal((1, 128, 768), dtype=np.float32)}
                w = Workload("gpt2-size prefill 128", decoder,
                             _export(decoder, inputs, "gpt2_prefill128", "logits"), inputs, "logits")
            else:
                step = DecodeStep(decoder).eval()
                kv = (12, 1, 12, 128, 64)
                inputs = {"x": rng.standard_normal((1, 1, 768), dtype=np.float32),
                          "past_k": rng.standard_normal(kv, dtype=np.float32),
                          "past_v": rng.standard_normal(kv, dtype=np.float32)}
                w = Workload("gpt2-size decode 1 @128", step,
                             _export(step, inputs, "gpt2_decode1_128", "logits"), inputs, "logits")
        elif name == "resnet-cnn":
            mod = resnet_cnn(width=32)
            inputs = {"x": rng.standard_normal((1, 3, 128, 128), dtype=np.float32)}
            w = Workload("resnet-cnn w32 1x3x128x128", mod,
                         _export(mod, inputs, "resnet_w32_128", "y"), inputs, "y")
        else:
            raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
        w.flops, w.bytes = _count(w.module, w.inputs)
        out.append(w)
    return out


# ----------------------------------------------------------------------------- peers
def _first(out) -> np.ndarray:
    """First output of any peer as a numpy array."""
    if isinstance(out, dict) or type(out).__name__ == "OVDict":
        out = next(iter(out.values()))
    elif isinstance(out, (list, tuple)):
        out = out[0]
    if hasattr(out, "numpy"):
        try:
            return out.numpy()
        except TypeError:
            return out.detach().numpy()
    return np.asarray(out)


def peer_llmc(w: Workload, tuning_db: str | None):
    import llmc

    try:
        art = llmc.compile(str(w.onnx), target="x86",
                           input_shapes={k: list(v.shape) for k, v in w.inputs.items()},
                           tuning_db=tuning_db)
    except Exception as exc:  # noqa: BLE001 - fall back to the torch frontend
        import torch

        w.notes.append(f"llmc from torch ({type(exc).__name__}: {str(exc)[:80]})")
        art = llmc.compile(w.module, target="x86",
                           example_inputs=tuple(torch.from_numpy(v) for v in w.inputs.values()),
                           tuning_db=tuning_db)
    model = art.load()
    return lambda: model.run(w.inputs)


def peer_onnxruntime(w: Workload, _):
    sess = ort_session(w.onnx, THREADS)
    return lambda: sess.run(None, w.inputs)


def _torch_call(module, w: Workload):
    import torch

    torch.set_num_threads(THREADS)
    tin = [torch.from_numpy(v) for v in w.inputs.values()]

    def run():
        with torch.inference_mode():
            return module(*tin)
    return run


def peer_pytorch(w: Workload, _):
    return _torch_call(w.module, w)


def peer_torch_compile(w: Workload, _):
    import torch

    fn = _torch_call(torch.compile(w.module), w)
    fn()  # compile now (counted as build time)
    return fn


def peer_tvm_relax(w: Workload, _):
    """TVM's user path: relax.frontend.onnx, then tvm.compile for the host's llvm target with
    TVM's bundled CPU schedule rules (dlight GEMV/Reduction; TVM ships no CPU matmul rule)."""
    import onnx
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from llmc.backends.x86 import host_target

    model = onnx.load(str(w.onnx))
    mod = from_onnx(model, shape_dict={k: list(v.shape) for k, v in w.inputs.items()},
                    dtype_dict={k: str(v.dtype) for k, v in w.inputs.items()})
    target = tvm.target.Target(host_target())
    try:
        from tvm.s_tir import dlight as dl

        with target:
            mod = tvm.transform.Sequential([
                relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                relax.transform.FoldConstant(), relax.transform.FuseOps(),
                relax.transform.FuseTIR(),
                dl.ApplyDefaultSchedule(dl.cpu.GEMV(), dl.cpu.Reduction())])(mod)
    except Exception as exc:  # noqa: BLE001 - the plain default pipeline still runs
        w.notes.append(f"tvm: dlight not applied ({type(exc).__name__})")
    ex = tvm.compile(mod, target)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(ex, dev)
    names = [i.name for i in model.graph.input if i.name in w.inputs]
    args = [tvm.runtime.tensor(w.inputs[n], dev) for n in names]
    return lambda: vm["main"](*args)


def peer_openvino(w: Workload, _):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(w.onnx))
    model.reshape({k: list(v.shape) for k, v in w.inputs.items()})
    cm = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": THREADS,
                                           "INFERENCE_PRECISION_HINT": "f32",
                                           "PERFORMANCE_HINT": "LATENCY"})
    req = cm.create_infer_request()
    return lambda: req.infer(w.inputs)


BUILDERS: dict[str, Callable] = {"llmc": peer_llmc, "onnxruntime": peer_onnxruntime,
                                 "pytorch": peer_pytorch, "torch.compile": peer_torch_compile,
                                 "tvm-relax": peer_tvm_relax, "openvino": peer_openvino}


def _reason(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1][:160] if lines else ''}"


_RATE: dict[str, tuple[float, str]] = {}  # peer -> (slowest GFLOP/s seen, on which workload)


def bench_workload(w: Workload, peers: list[str], repeat: int, tuning_db: str | None,
                   max_run_s: float, peer_budget_s: float, max_est_s: float) -> dict:
    """Build every peer, check its output against ORT's, time them interleaved."""
    row: dict = {"workload": w.name, "flops": w.flops, "bytes": w.bytes, "build_s": {},
                 "runs": {}, "max_abs_err_vs_ort": {}, "na": {}}
    runners, first_s = {}, {}
    ref = None
    for p in peers:
        if p in _RATE and w.flops / (_RATE[p][0] * 1e9) > max_est_s:
            row["na"][p] = (f"skipped: est. {w.flops / (_RATE[p][0] * 1e9):.0f} s per run at the "
                            f"{_RATE[p][0]:.2f} GFLOP/s it reached on {_RATE[p][1]}")
            continue
        print(f"suite: {w.name}: building {p} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            fn = BUILDERS[p](w, tuning_db)
            row["build_s"][p] = round(time.perf_counter() - t0, 2)
            t1 = time.perf_counter()
            out = _first(fn())
            first_s[p] = time.perf_counter() - t1
        except Exception as exc:  # noqa: BLE001 - a peer that fails is n/a, not a crash
            row["na"][p] = _reason(exc)
            if os.environ.get("SUITE_DEBUG"):
                traceback.print_exc()
            continue
        if p == "onnxruntime":
            ref = out
        runners[p] = (fn, out)
        rate = w.flops / max(first_s[p], 1e-9) / 1e9
        if rate < _RATE.get(p, (float("inf"), ""))[0]:
            _RATE[p] = (rate, w.name)
    for p, (fn, out) in list(runners.items()):
        if ref is not None and out.shape == ref.shape:
            row["max_abs_err_vs_ort"][p] = float(np.abs(out.astype(np.float64) - ref).max())
        if first_s[p] > max_run_s:  # e.g. TVM's unscheduled matmuls: one run is the figure
            row[p] = first_s[p] * 1e3
            row["runs"][p] = 1
            del runners[p]
    samples: dict[str, list[float]] = {p: [] for p in runners}
    spent = {p: 0.0 for p in runners}
    for p, (fn, _) in runners.items():  # warm-up
        fn()
    for _ in range(repeat):
        for p, (fn, _) in runners.items():
            if spent[p] > peer_budget_s and len(samples[p]) >= 5:
                continue
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            samples[p].append(dt)
            spent[p] += dt
    for p, ts in samples.items():
        row[p] = float(np.median(ts)) * 1e3
        row["runs"][p] = len(ts)
    if w.notes:
        row["notes"] = list(w.notes)
    return row


# ----------------------------------------------------------------------------- report
def print_table(rows: list[dict], peers: list[str]) -> None:
    """workload | each peer's median ms | each peer's ratio to ONNX Runtime."""
    others = [p for p in peers if p != "onnxruntime"]
    head = ["workload"] + [f"{p} ms" for p in peers] + [f"{p}/ort" for p in others]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        ort = r.get("onnxruntime")
        cells = [r["workload"]]
        for p in peers:
            v = r.get(p)
            cells.append("n/a" if v is None else f"{v:.2f}" + ("*" if r["runs"].get(p) == 1 else ""))
        cells += [f"{r[p] / ort:.2f}" if r.get(p) is not None and ort else "n/a" for p in others]
        print(" | ".join(cells))
    for r in rows:
        for p, why in r["na"].items():
            print(f"n/a: {r['workload']} / {p}: {why}")
        for note in r.get("notes", []):
            print(f"note: {r['workload']}: {note}")
    if any(1 in r["runs"].values() for r in rows):
        print("* one run only (slower than --max-run-s per run)")


def plot(rows: list[dict], peers: list[str], path: str) -> str | None:
    """Grouped bars: each peer's latency relative to ONNX Runtime (log scale)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(peers)
    for i, p in enumerate(peers):
        vals = [r[p] / r["onnxruntime"] if r.get(p) and r.get("onnxruntime") else 0 for r in rows]
        ax.bar(np.arange(len(rows)) + i * width, vals, width, label=p)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2)
    ax.set_xticklabels([r["workload"] for r in rows], rotation=15, fontsize=8)
    ax.set_ylabel("latency / ONNX Runtime (lower is faster)")
    ax.set_title(f"llmc x86 suite ({THREADS} threads, median)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per peer (median)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--tuning-db", help="llmc: use `llmc tune` records from DIR")
    ap.add_argument("--max-run-s", type=float, default=5.0,
                    help="a peer slower than this per run is timed once")
    ap.add_argument("--peer-budget-s", type=float, default=30.0,
                    help="stop timing a peer after this many seconds (>= 5 runs)")
    ap.add_argument("--max-est-s", type=float, default=40.0,
                    help="skip a peer whose earlier GFLOP/s predicts a slower run than this")
    ap.add_argument("--json", default=str(CACHE / "suite.json"))
    ap.add_argument("--png", default=str(CACHE / "suite.png"))
    ap.add_argument("--roofline", action="store_true", help="add fractions of the measured roofline")
    args = ap.parse_args()

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in peers if p not in BUILDERS]
    if bad:
        raise SystemExit(f"unknown peers {bad}; choose from {', '.join(PEERS)}")
    if "onnxruntime" not in peers:
        peers.insert(0, "onnxruntime")  # the reference of every ratio
    rows = []
    for w in make_workloads([s.strip() for s in args.workloads.split(",") if s.strip()]):
        rows.append(bench_workload(w, peers, args.repeat, args.tuning_db, args.max_run_s,
                                   args.peer_budget_s, args.max_est_s))
    load = os.getloadavg()
    print(f"machine: {machine()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"median of up to {args.repeat} interleaved runs; ratios to ONNX Runtime (<1 = faster)")
    print_table(rows, peers)
    for r in rows:
        errs = ", ".join(f"{p} {e:.1e}" for p, e in r["max_abs_err_vs_ort"].items() if p != "onnxruntime")
        print(f"{r['workload']}: build s {r['build_s']}; max abs err vs ORT: {errs}")
    result = {"machine": machine(), "load": load, "threads": THREADS, "peers": peers, "rows": rows}
    if args.roofline:
        from bench.roofline import fraction_rows, measure_machine, print_fractions

        roof = measure_machine()
        frac = fraction_rows(rows, roof)
        print_fractions(frac, roof)
        result.update(roofline=roof, fractions=frac)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"suite: wrote {args.json}", file=sys.stderr)
    if args.png:
        why = plot(rows, peers, args.png)
        print(f"suite: {why}" if why else f"suite: wrote {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
