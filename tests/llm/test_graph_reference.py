"""The prefill/decode graphs, run by the numpy reference interpreter, against transformers.

Fast (no TVM build): checks the importer and graph construction for every supported family,
including Qwen2-style q/k/v biases, untied LM heads, fp16 KV caches and left padding.
"""
from __future__ import annotations

import numpy as np
import pytest

from .llm_helpers import decode_cache_feed, tiny_gpt2, tiny_llama


def _hf_logits(model, ids: np.ndarray, attn: np.ndarray | None = None) -> np.ndarray:
    import torch

    with torch.no_grad():
        kw = {}
        if attn is not None:
            kw["attention_mask"] = torch.tensor(attn)
            pos = np.maximum(np.cumsum(attn, 1) - 1, 0)
            kw["position_ids"] = torch.tensor(pos)
        return model(torch.tensor(ids), **kw).logits.numpy()


def _run_steps(model, prompt: list[int], extra: list[int], kv_dtype: str = "float32"):
    """Prefill ``prompt`` then decode ``extra`` one by one; return the logits of every step."""
    from llmc.frontends.hf import from_transformers
    from llmc.interpreter import run_reference
    from llmc.llm_graph import build_graph

    spec = from_transformers(model)
    pre = build_graph(spec, "prefill", kv_dtype=kv_dtype, max_position=64)
    dec = build_graph(spec, "decode", kv_dtype=kv_dtype, max_position=64)
    pre.verify()
    dec.verify()
    S = len(prompt)
    mask = np.triu(np.full((S, S), -1e9, np.float32), 1)[None, None]
    out = run_reference(pre, {"input_ids": np.array([prompt]), "positions": np.arange(S)[None],
                              "mask": mask})
    names = pre.outputs[1:]           # k_0, v_0, [k_scale_0, v_scale_0,] k_1, ...
    cache = [out[n] for n in names]
    assert all(c.dtype == np.dtype(kv_dtype) for n, c in zip(names, cache) if "scale" not in n)
    logits = [out["logits"]]
    for t, tok in enumerate(extra):
        past = S + t
        feed = {"input_ids": np.array([[tok]]), "positions": np.array([[past]]),
                "mask": np.zeros((1, 1, 1, past + 1), np.float32),
                **decode_cache_feed(cache, dec, spare=3)}
        o = run_reference(dec, feed)
        assert o[f"k_{0}"].shape[2] == 1
        cache = [np.concatenate([c, o[n]], axis=2) for c, n in zip(cache, names)]
        logits.append(o["logits"])
    return logits


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mistral", "llama_untied_mha"])
def test_prefill_and_decode_match_transformers(family):
    if family == "llama":
        model = tiny_llama()
    elif family == "llama_untied_mha":
        model = tiny_llama(seed=3, num_key_value_heads=4, tie_word_embeddings=False)
    elif family == "gpt2":
        model = tiny_gpt2()
    elif family == "mistral":
        import torch
        from transformers import MistralConfig, MistralForCausalLM

        torch.manual_seed(2)
        model = MistralForCausalLM(MistralConfig(
            vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            initializer_range=0.3, sliding_window=64)).eval()
    else:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM

        torch.manual_seed(1)
        model = Qwen2ForCausalLM(Qwen2Config(
            vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
            initializer_range=0.3, use_sliding_window=False)).eval()
    prompt, extra = [5, 7, 9, 11, 3], [17, 2, 99]
    got = _run_steps(model, prompt, extra)
    ref = _hf_logits(model, np.array([prompt + extra]))[0]
    for t, lg in enumerate(got):
        np.testing.assert_allclose(lg[0], ref[len(prompt) - 1 + t], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kv_dtype,tol", [("float16", 2e-2), ("int8", 6e-2)])
def test_narrow_kv_cache_stays_close(kv_dtype, tol):
    """fp16 and int8 (per-row scales) caches: every step's logits close to transformers' fp32."""
    model = tiny_llama()
    prompt, extra = [5, 7, 9, 11, 3], [17, 2]
    got = _run_steps(model, prompt, extra, kv_dtype=kv_dtype)
    ref = _hf_logits(model, np.array([prompt + extra]))[0]
    errs = []
    for t, lg in enumerate(got):
        errs.append(np.abs(lg[0] - ref[len(prompt) - 1 + t]).max() / np.abs(ref).max())
        assert errs[-1] < tol, errs
        assert np.argmax(lg[0]) == np.argmax(ref[len(prompt) - 1 + t])
    assert max(errs) > 0      # the cache really was rounded


def test_left_padded_prefill_matches_unpadded_rows():
    """A padded row's logits equal transformers' for the same row with its attention mask."""
    from llmc.frontends.hf import from_transformers
    from llmc.interpreter import run_reference
    from llmc.llm_graph import MASK_MIN, build_graph

    model = tiny_llama()
    g = build_graph(from_transformers(model), "prefill", max_position=64)
    ids = np.array([[0, 0, 5, 7, 9], [4, 8, 15, 16, 23]])
    attn = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    pos = np.maximum(np.cumsum(attn, 1) - 1, 0)
    keep = np.tril(np.ones((5, 5), bool))[None] & attn[:, None, :].astype(bool)
    mask = np.where(keep, 0, MASK_MIN).astype(np.float32)[:, None]
    out = run_reference(g, {"input_ids": ids, "positions": pos, "mask": mask})
    ref = _hf_logits(model, ids, attn)[:, -1]
    np.testing.assert_allclose(out["logits"], ref, rtol=1e-4, atol=1e-4)
    assert np.isfinite(np.concatenate([out["k_0"].ravel(), out["v_1"].ravel()])).all()
