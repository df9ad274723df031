"""Compiled tiny LLaMA / GPT-2 artifacts against transformers generate (token for token)."""
from __future__ import annotations

import numpy as np
import pytest

from llmc.errors import InputError

from .llm_helpers import compile_to, hf_greedy, reference_greedy

pytestmark = pytest.mark.slow   # each artifact takes ~20 s to build

PROMPTS = [[5, 7, 9, 11, 3], [42, 1, 77, 100, 6, 6, 19, 120, 2, 64, 33]]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_llama_greedy_64_matches_transformers(llama_llm, llama_model, prompt):
    got = llama_llm.generate(prompt, 64, stop_tokens=[])
    ref = hf_greedy(llama_model, prompt, 64)
    assert len(set(ref)) > 8            # the reference is not degenerate
    assert got == ref


def test_gpt2_greedy_64_matches_transformers(gpt2_artifact, gpt2_tiny):
    from llmc.runtime.llm import load_llm

    llm = load_llm(gpt2_artifact)
    for prompt in PROMPTS:
        ref = hf_greedy(gpt2_tiny, prompt, 64)
        assert len(set(ref)) > 8
        assert llm.generate(prompt, 64, stop_tokens=[]) == ref


def test_batch_with_padding_equals_each_prompt_alone(llama_llm, llama_model):
    got = llama_llm.generate(PROMPTS, 24, stop_tokens=[])
    assert got == [hf_greedy(llama_model, p, 24) for p in PROMPTS]


def test_stop_tokens_and_streaming(llama_llm, llama_model):
    ref = hf_greedy(llama_model, PROMPTS[0], 32)
    stop = ref[6]
    first = ref.index(stop)
    seen: list[list[int]] = []
    got = llama_llm.generate(PROMPTS[0], 32, stop_tokens=[stop], stream=seen.append)
    assert got == ref[:first + 1]
    assert [s[0] for s in seen] == got


def test_sampling_is_seeded_and_top_k_1_is_greedy(llama_llm, llama_model):
    a = llama_llm.generate(PROMPTS[0], 20, temperature=1.0, top_k=20, seed=7, stop_tokens=[])
    b = llama_llm.generate(PROMPTS[0], 20, temperature=1.0, top_k=20, seed=7, stop_tokens=[])
    c = llama_llm.generate(PROMPTS[0], 20, temperature=1.0, top_k=20, seed=8, stop_tokens=[])
    assert a == b and a != c
    greedy = hf_greedy(llama_model, PROMPTS[0], 20)
    assert llama_llm.generate(PROMPTS[0], 20, temperature=0.7, top_k=1, seed=1,
                              stop_tokens=[]) == greedy
    assert llama_llm.generate(PROMPTS[0], 20, temperature=0.7, top_p=1e-6, seed=1,
                              stop_tokens=[]) == greedy


def test_input_errors(llama_llm):
    with pytest.raises(InputError, match="max context"):
        llama_llm.generate(PROMPTS[0], 500)
    with pytest.raises(InputError, match="vocabulary"):
        llama_llm.generate([5, 1000], 4)
    with pytest.raises(InputError, match="tokenizer"):
        llama_llm.generate_text("hello", 4)


def test_manifest_describes_both_entry_points(llama_artifact):
    from llmc.runtime.format import read_artifact

    manifest, members = read_artifact(str(llama_artifact), "t")
    assert manifest["kind"] == "llm"
    eps = manifest["entry_points"]
    assert set(eps) == {"prefill", "decode"}
    assert {eps["prefill"]["library"], eps["decode"]["library"]} <= set(members)
    # the weights both entry points use are stored once
    assert set(eps["prefill"]["params"]) & set(eps["decode"]["params"])
    assert manifest["llm"]["max_context"] == 160


def test_fp16_kv_cache_artifact(llama_model, tmp_path):
    from llmc.runtime.llm import load_llm

    llm = load_llm(compile_to(llama_model, tmp_path / "f16.llmc", max_context=64,
                              kv_dtype="float16"))
    assert llm.kv_dtype == np.float16
    assert llm.generate(PROMPTS[0], 32, stop_tokens=[]) == hf_greedy(llama_model, PROMPTS[0], 32)


def test_cli_generate_text_and_ids(gpt2_artifact, gpt2_tiny, capsys):
    from llmc.llm_cli import main_for_tests

    prompt = PROMPTS[0]
    ref = hf_greedy(gpt2_tiny, prompt, 16)
    assert main_for_tests(["generate", str(gpt2_artifact), "--prompt-ids",
                           ",".join(map(str, prompt)), "--max-new-tokens", "16",
                           "--stop-ids", ""]) == 0
    assert capsys.readouterr().out.strip() == ",".join(map(str, ref))
    text = " ".join(f"w{t}" for t in prompt)
    assert main_for_tests(["generate", str(gpt2_artifact), "--prompt", text,
                           "--max-new-tokens", "16", "--stop-ids", ""]) == 0
    assert capsys.readouterr().out.split() == [f"w{t}" for t in ref]
    assert main_for_tests(["generate", str(gpt2_artifact)]) == 1   # no prompt: one-line error


def test_int4_artifact_matches_the_quantized_reference(llama_model, tmp_path):
    """int4 weight-only: compiled greedy tokens equal the numpy reference of the same graphs."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph
    from llmc.passes.int4 import quantize_int4
    from llmc.runtime.llm import load_llm

    llm = load_llm(compile_to(llama_model, tmp_path / "int4.llmc", max_context=64,
                              weights="int4", group_size=32))
    assert llm.manifest["llm"]["quantized_layers"] == 2 * 4 + 1   # qkv, o, gate_up, down + head
    prompt, n = PROMPTS[0], 16
    got = llm.generate(prompt, n, stop_tokens=[])
    spec = from_transformers(llama_model)
    pre, _ = quantize_int4(build_graph(spec, "prefill", max_position=64), 32)
    dec, _ = quantize_int4(build_graph(spec, "decode", max_position=64), 32)
    want = reference_greedy(pre, dec, prompt, n, spec.num_layers)
    assert got == want
