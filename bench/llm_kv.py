"""SmolLM2-135M decode speed and tokens by KV-cache precision (fp32 / fp16 / int8) at a short
and a long context.

Why: at a long context attention reads the whole cache every token (SmolLM2 at 1024 tokens:
47 MB of fp32 rows, a third of the int8 weights' bytes), so the cache precision shows there.
All artifacts use the same weights (``--weights``), are compiled once into ``--keep`` and run
interleaved (``--repeat`` rounds, median); the prompt is the shipped example text, repeated
to length. Prints ms/token, cache bytes and how many greedy tokens equal the fp32 cache's.

    python bench/llm_kv.py [--prompts 128,1024] [--weights int8] [--threads 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine, threads_flag  # noqa: E402


THREADS = fair_environment(threads_flag())

import numpy as np  # noqa: E402

KV_DTYPES = ("float32", "float16", "int8")
TEXT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                    "data", "pride_and_prejudice_ch1.txt")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", default="128,1024")
    ap.add_argument("--weights", default="int8", choices=["float32", "int8", "int4"])
    ap.add_argument("--new", type=int, default=33)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--keep", default=os.path.join(tempfile.gettempdir(), "llmc-bench-llm-kv"))
    args = ap.parse_args()

    from llmc.frontends.hf_gguf import convert_gguf, smollm2_gguf_path
    from llmc.llm import LLMCompileOptions, compile_llm_to_file
    from llmc.runtime.llm import load_llm

    prompts = [int(p) for p in args.prompts.split(",")]
    ctx = max(prompts) + args.new + 8
    os.makedirs(args.keep, exist_ok=True)
    model_dir = convert_gguf(smollm2_gguf_path())
    llms = {}
    for kv in KV_DTYPES:
        path = os.path.join(args.keep, f"smollm2-{args.weights}-kv{kv}-ctx{ctx}.llmc")
        if not os.path.exists(path):
            compile_llm_to_file(model_dir, path, LLMCompileOptions(
                max_context=ctx, weights=args.weights, kv_dtype=kv,
                group_size=64 if args.weights == "int4" else None))
        llms[kv] = load_llm(path)
    ids = llms["float32"].encode(open(TEXT, encoding="utf-8").read())
    print(f"# {machine()}; threads {THREADS}; weights {args.weights}; median of {args.repeat} "
          f"interleaved rounds; {args.new} new tokens; load {os.getloadavg()}")
    print("prompt | KV | decode ms/token | prefill ms | cache MB | tokens = fp32 cache's")
    print("--- | --- | --- | --- | --- | ---")
    for P in prompts:
        prompt = (ids * (P // len(ids) + 1))[:P]
        dec = {kv: [] for kv in KV_DTYPES}
        pre = {kv: [] for kv in KV_DTYPES}
        toks = {}
        for _ in range(args.repeat):
            for kv, llm in llms.items():
                toks[kv] = llm.generate(prompt, args.new, stop_tokens=[])
                t = llm.last_timings
                dec[kv].append(1e3 * t["decode_s"] / max(t["decode_steps"], 1))
                pre[kv].append(1e3 * t["prefill_s"])
        for kv, llm in llms.items():
            same = next((i for i, (a, b) in enumerate(zip(toks["float32"], toks[kv])) if a != b),
                        len(toks[kv]))
            print(f"{P} | {kv} | {np.median(dec[kv]):.2f} | {np.median(pre[kv]):.0f} | "
                  f"{llm.last_timings['kv_cache_bytes'] / 1e6:.1f} | {same}/{len(toks[kv])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
