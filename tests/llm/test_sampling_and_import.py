"""Fast checks: the sampler's top-k / top-p / temperature semantics and the importer's errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmc.errors import FrontendError
from llmc.runtime.llm import LLM

from .llm_helpers import tiny_gpt2, tiny_llama

PROBS = np.array([0.5, 0.3, 0.15, 0.05])


def _draw(n: int, **kw) -> np.ndarray:
    rng = np.random.default_rng(0)
    logits = np.log(np.tile(PROBS, (n, 1)))
    return LLM._pick(logits, rng=rng, **kw)


def test_greedy_is_argmax():
    logits = np.random.default_rng(1).normal(size=(3, 50))
    assert (LLM._pick(logits, 0.0, 0, 1.0, np.random.default_rng(0)) == logits.argmax(1)).all()


def test_temperature_one_samples_the_softmax():
    draws = _draw(20000, temperature=1.0, top_k=0, top_p=1.0)
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, PROBS, atol=0.02)


def test_top_k_and_top_p_restrict_the_support():
    assert set(_draw(2000, temperature=1.0, top_k=2, top_p=1.0)) == {0, 1}
    # top_p=0.7: {0.5, 0.3} is the smallest prefix reaching 0.7
    d = _draw(4000, temperature=1.0, top_k=0, top_p=0.7)
    assert set(d) == {0, 1}
    np.testing.assert_allclose(np.mean(d == 0), 0.5 / 0.8, atol=0.03)
    assert set(_draw(500, temperature=1.0, top_k=0, top_p=0.4)) == {0}


def test_low_temperature_sharpens():
    cold = _draw(2000, temperature=0.1, top_k=0, top_p=1.0)
    assert np.mean(cold == 0) > 0.98


def test_load_hf_directory_round_trip(tmp_path):
    from llmc.frontends.hf import from_transformers, load_hf

    model = tiny_gpt2()
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    a, b = from_transformers(model), load_hf(tmp_path)
    assert a.config_dict() | {"source": ""} == b.config_dict() | {"source": ""}
    for k in ("transformer.wte.weight", "transformer.h.1.attn.c_attn.weight"):
        np.testing.assert_array_equal(a.weights[k], b.weights[k])


def test_importer_errors_name_the_problem(tmp_path):
    from llmc.frontends.hf import load_hf, spec_from_config
    from llmc.llm_graph import build_graph

    with pytest.raises(FrontendError, match="model_type 'bert'"):
        spec_from_config({"model_type": "bert"}, {}, "x")
    with pytest.raises(FrontendError, match="no config.json"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(FrontendError, match="safetensors"):
        load_hf(tmp_path)
    model = tiny_llama()
    cfg = model.config.to_dict()
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()
          if "layers.1.mlp.up_proj" not in k}
    with pytest.raises(FrontendError, match="layers.1.mlp.up_proj.weight"):
        build_graph(spec_from_config(cfg, sd, "ckpt"), "prefill")
    with pytest.raises(FrontendError, match="rope type"):
        spec_from_config({**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, sd, "c")


def test_compile_refuses_bad_options():
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from llmc.errors import LlmcError
    from llmc.frontends.hf import from_transformers
    from llmc.llm import LLMCompileOptions, compile_llm

    torch.manual_seed(0)
    spec = from_transformers(MistralForCausalLM(MistralConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, sliding_window=16)).eval())
    with pytest.raises(LlmcError, match="sliding window"):
        compile_llm(spec, LLMCompileOptions(max_context=32))
    with pytest.raises(LlmcError, match="KV-cache dtype"):
        compile_llm(spec, LLMCompileOptions(max_context=16, kv_dtype="int4"))
    with pytest.raises(LlmcError, match="weight precision 'int2'.*float32, int8, int4"):
        compile_llm(spec, LLMCompileOptions(max_context=16, weights="int2"))
    gpt2 = from_transformers(tiny_gpt2())
    with pytest.raises(LlmcError, match="learned"):
        compile_llm(gpt2, LLMCompileOptions(max_context=1024))


def test_bfloat16_checkpoint_loads_exactly(tmp_path):
    import torch

    from llmc.frontends.hf import load_hf

    model = tiny_llama().to(torch.bfloat16)
    model.save_pretrained(str(tmp_path), safe_serialization=True)
    spec = load_hf(tmp_path)
    for k, v in model.state_dict().items():
        if k in spec.weights:
            np.testing.assert_array_equal(spec.weights[k], v.float().numpy())
    assert spec.weights["model.embed_tokens.weight"].dtype == np.float32
