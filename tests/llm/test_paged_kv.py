"""Paged KV cache (runtime/kv_cache.py): same past as the preallocated cache, fewer bytes."""
from __future__ import annotations

import numpy as np
import pytest

from llmc.runtime.kv_cache import ContiguousKVCache, PagedKVCache


def _fill(cache, rows, starts, steps, rng):
    cache.write_prompt(rows, starts)
    P = rows[0].shape[2]
    for t in range(steps):
        new = [rng.standard_normal((r.shape[0], r.shape[1], 1, r.shape[3])).astype(r.dtype)
               for r in rows]
        cache.append(new, P + t)


@pytest.mark.parametrize("block", [1, 4, 16])
def test_paged_past_equals_contiguous_on_real_tokens(block):
    B, KV, HD, CTX, P, steps = 3, 2, 8, 40, 11, 9
    starts = np.array([0, 6, 10])                      # left padding of shorter prompts
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal((B, KV, P, HD)).astype(np.float16) for _ in range(4)]
    dense = ContiguousKVCache(4, B, KV, HD, CTX, np.float16)
    paged = PagedKVCache(4, B, KV, HD, CTX, np.float16, block_size=block)
    _fill(dense, rows, starts, steps, np.random.default_rng(1))
    _fill(paged, rows, starts, steps, np.random.default_rng(1))
    n = P + steps
    for a, b in zip(dense.past(n), paged.past(n)):
        assert b.shape == a.shape and b.dtype == a.dtype
        for r, s in enumerate(starts):
            np.testing.assert_array_equal(b[r, :, s:], a[r, :, s:])
            assert not b[r, :, :s - s % block].any()    # unallocated padding reads as zeros
    want = sum(-(-n // block) - int(s) // block for s in starts)
    assert paged.blocks_allocated == want
    assert paged.nbytes == want * 4 * KV * block * HD * 2 < dense.nbytes


@pytest.mark.slow
def test_paged_generate_matches_contiguous(llama_llm):
    """A batch of prompts of different lengths: identical tokens, only the used blocks."""
    prompts = [[5, 7, 9, 11, 3], [42, 1, 77, 100, 6, 6, 19, 120, 2, 64, 33], [17]]
    new, block = 24, 8
    want = llama_llm.generate(prompts, new, stop_tokens=[])
    dense_bytes = llama_llm.last_timings["kv_cache_bytes"]
    got = llama_llm.generate(prompts, new, stop_tokens=[], kv_cache="paged", block_size=block)
    assert got == want
    P = max(len(p) for p in prompts)
    end = P + new - 1                                  # positions written: prompt + decode steps
    blocks = sum(-(-end // block) - (P - len(p)) // block for p in prompts)
    assert llama_llm.last_cache.blocks_allocated == blocks
    assert llama_llm.last_timings["kv_cache_bytes"] < dense_bytes
    single = llama_llm.generate(prompts[1], new, stop_tokens=[], kv_cache="paged", block_size=3)
    assert single == want[1]


@pytest.mark.slow
def test_cli_generate_with_a_paged_cache(llama_artifact, llama_llm, capsys):
    from llmc.llm_cli import main_for_tests

    want = llama_llm.generate([5, 7, 9], 12, stop_tokens=[])
    assert main_for_tests(["generate", str(llama_artifact), "--prompt-ids", "5,7,9",
                           "--max-new-tokens", "12", "--stop-ids", "", "--kv-cache", "paged",
                           "--block-size", "4"]) == 0
    assert capsys.readouterr().out.strip() == ",".join(map(str, want))
