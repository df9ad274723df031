"""Real exported models through O3: fewer nodes, same outputs (vs ONNX Runtime too)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmc.frontends.onnx import import_onnx
from llmc.interpreter import run_reference
from llmc.passes import LEVELS, plan_memory, run_passes

from passes_testutil import body_ops, ops

TINY_BERT = Path(__file__).resolve().parents[2] / "examples" / "models" / "tiny_bert.onnx"


def _bert_inputs(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq // 2:] = 0  # one padded row exercises the attention mask
    return {"input_ids": rng.integers(0, vocab, (batch, seq)).astype(np.int64),
            "attention_mask": mask}


def _ort(path: Path, inputs: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, inputs)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_tiny_bert_every_level_matches_onnxruntime(level):
    g = import_onnx(str(TINY_BERT))
    inputs = _bert_inputs(2, 16, 1000)
    out, report = run_passes(g, level=level, verify=True, check_numerics=inputs,
                             rtol=1e-4, atol=1e-5)
    (want,) = _ort(TINY_BERT, inputs)
    (got,) = run_reference(out, inputs).values()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if level == "O3":
        assert len(out.nodes) < len(g.nodes) - 25
        assert body_ops(out)["gelu"] == 2 and "erf" not in body_ops(out) and "div" not in body_ops(out)
        assert "cast" in ops(g) and body_ops(out)["cast"] < ops(g)["cast"]
        assert report.rows[-1].nodes_after == len(out.nodes)
        before = plan_memory(g, {"batch": 1, "seq": 128})
        after = plan_memory(out, {"batch": 1, "seq": 128})
        assert after.total_bytes < before.total_bytes
        assert after.arena_bytes <= before.arena_bytes


def test_minilm_o3(minilm_onnx_path, minilm_inputs):
    g = import_onnx(str(minilm_onnx_path))
    ids, mask = (np.asarray(t) for t in minilm_inputs)
    inputs = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
    inputs = {k: v for k, v in inputs.items() if k in g.inputs}
    out, report = run_passes(g, level="O3", verify=True, check_numerics=inputs,
                             rtol=1e-4, atol=1e-5)
    assert body_ops(out)["gelu"] == 6 and "erf" not in body_ops(out)
    assert len(out.nodes) <= len(g.nodes) - 25  # 232 -> 204 when written
    want = _ort(minilm_onnx_path, inputs)
    got = list(run_reference(out, inputs).values())
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
