"""Tiny random-weight transformers LLMs for the LLM tests, and helpers to compile and compare them.

initializer_range=0.3 makes the logits sharp enough that greedy decoding produces varied tokens
(the default 0.02 makes tiny models repeat one token, which would make the token-match tests
weak).
"""
from __future__ import annotations


def tiny_llama(seed: int = 0, **overrides):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    kw = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              initializer_range=0.3, rope_theta=10000.0)
    kw.update(overrides)
    return LlamaForCausalLM(LlamaConfig(**kw)).eval()


def tiny_gpt2(seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4,
                                      n_positions=256, initializer_range=0.3)).eval()


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    """transformers generate, greedy, never stopping early: the reference tokens."""
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def compile_to(model, path, **options):
    from llmc.frontends.hf import from_transformers
    from llmc.llm import LLMCompileOptions, compile_llm
    from llmc.runtime.format import write_artifact

    manifest, members = compile_llm(from_transformers(model), LLMCompileOptions(**options))
    write_artifact(str(path), manifest, members)
    return path


def save_with_tokenizer(model, directory) -> None:
    """save_pretrained (safetensors) plus a word-level tokenizer.json: "w0 w1 .." <-> ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders

    model.save_pretrained(str(directory), safe_serialization=True)
    vocab = {f"w{i}": i for i in range(model.config.vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(directory / "tokenizer.json"))


def reference_greedy(prefill, decode, prompt: list[int], n: int, num_layers: int) -> list[int]:
    """Greedy tokens of the numpy reference of an LLM's prefill/decode graphs (the KV cache
    kept by hand): what a compiled artifact of the same (e.g. quantized) graphs must produce."""
    import numpy as np

    from llmc.interpreter import run_reference
    from llmc.llm_graph import MASK_MIN

    S = len(prompt)
    o = run_reference(prefill, {"input_ids": np.array([prompt]), "positions": np.arange(S)[None],
                                "mask": np.triu(np.full((S, S), MASK_MIN, np.float32), 1)[None, None]})
    names = prefill.outputs[1:]          # k_0, v_0, [k_scale_0, v_scale_0,] k_1, ...
    cache = [o[k] for k in names]
    want: list[int] = []
    for t in range(n):
        want.append(int(np.argmax(o["logits"][0])))
        feed = {"input_ids": np.array([[want[-1]]]), "positions": np.array([[S + t]]),
                "mask": np.zeros((1, 1, 1, S + t + 1), np.float32),
                **decode_cache_feed(cache, decode)}
        o = run_reference(decode, feed)
        cache = [np.concatenate([c, o[k]], axis=2) for c, k in zip(cache, names)]
    return want


def decode_cache_feed(cache: list, decode, spare: int = 1) -> dict:
    """The decode graph's cache inputs for the reference interpreter: each cached prefix
    ``[b, kv, past, hd]`` (in the order of the prefill's row outputs: k_0, v_0, [k_scale_0,
    v_scale_0,] k_1, ...) followed by ``spare`` free rows (the step writes row ``past``)."""
    import numpy as np

    names = decode.inputs[3:]
    assert len(names) == len(cache), (names, len(cache))
    return {n: np.concatenate([c, np.zeros(c.shape[:2] + (spare,) + c.shape[3:], c.dtype)],
                              axis=2) for n, c in zip(names, cache)}
