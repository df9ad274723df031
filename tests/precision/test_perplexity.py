"""Perplexity on the shipped text: the llmc computation matches torch's on a small decoder, and
the accuracy report gives it for fp32 vs int8 vs int4 lowerings of the same graph."""
from __future__ import annotations

import numpy as np
import pytest

from llmc.accuracy import (accuracy_report, byte_tokens, lm_windows, perplexity, shipped_text,
                           text_perplexity)
from llmc.errors import InputError
from llmc.interpreter import run_reference

WINDOW = 24


@pytest.fixture(scope="module")
def gpt2_prefill():
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph
    from tests.llm.llm_helpers import tiny_gpt2
    model = tiny_gpt2()
    return model, build_graph(from_transformers(model), "prefill", max_position=64,
                              all_logits=True)


def test_shipped_text_is_ascii_and_fits_a_byte_vocabulary():
    text = shipped_text()
    assert len(text) > 2000 and "universally acknowledged" in text
    t = byte_tokens(text, 128)
    assert t.max() < 128 and t.size == len(text.encode())


def test_perplexity_matches_a_numpy_log_softmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 11)).astype(np.float32)
    labels = rng.integers(0, 11, (2, 5))
    lp = logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    want = np.exp(-np.mean(np.take_along_axis(lp, labels[..., None], -1)))
    assert perplexity(logits, labels) == pytest.approx(want, rel=1e-9)


def test_windows_shift_labels_by_one():
    feeds, labels = lm_windows(np.arange(50), 8)
    assert len(feeds) == 6
    np.testing.assert_array_equal(feeds[1]["input_ids"][0], np.arange(8, 16))
    np.testing.assert_array_equal(labels[1][0], np.arange(9, 17))
    assert feeds[0]["mask"][0, 0, 0, 1] <= -1e9 and feeds[0]["mask"][0, 0, 1, 0] == 0
    with pytest.raises(InputError):
        lm_windows(np.arange(5), 8)


def test_text_perplexity_matches_torch(gpt2_prefill):
    """Same quantity from transformers' logits with torch's cross-entropy."""
    import torch
    model, g = gpt2_prefill
    tokens = byte_tokens(shipped_text(), 128)[:3 * WINDOW + 1]
    feeds, labels = lm_windows(tokens, WINDOW)
    got = text_perplexity(lambda f: run_reference(g, f), feeds, labels)
    with torch.no_grad():
        nll = [torch.nn.functional.cross_entropy(
            model(torch.from_numpy(f["input_ids"])).logits[0].double(),
            torch.from_numpy(lab[0]), reduction="sum").item() for f, lab in zip(feeds, labels)]
    want = float(np.exp(sum(nll) / (len(feeds) * WINDOW)))
    assert got == pytest.approx(want, rel=1e-4)


def test_report_gives_perplexity_for_int8_and_int4(gpt2_prefill):
    from llmc.passes.precision import apply_precision
    _, g = gpt2_prefill
    tokens = byte_tokens(shipped_text(), 128)
    feeds, labels = lm_windows(tokens, WINDOW, max_windows=4)
    calib, _ = lm_windows(tokens[-(2 * WINDOW + 1):], WINDOW)  # calibrate on other text
    ppl_fp32 = text_perplexity(lambda f: run_reference(g, f), feeds, labels)
    for mode, kw in [("int8", {"calibrator": "percentile"}), ("int4", {"group_size": 32})]:
        q, info = apply_precision(g, mode, calib, **kw)
        rep = accuracy_report(g, q, feeds, mode, labels=labels, info=info)
        m = rep.outputs["logits"]
        assert m["perplexity_fp32"] == pytest.approx(ppl_fp32, rel=1e-9)
        want = text_perplexity(lambda f: run_reference(q, f), feeds, labels)
        assert m["perplexity"] == pytest.approx(want, rel=1e-9)
        assert np.isfinite(m["perplexity"]) and "ppl" in rep.format()
        # lowered precision moves the perplexity, but not by orders of magnitude
        assert 0.5 < m["perplexity"] / ppl_fp32 < 2.0, rep.format()
