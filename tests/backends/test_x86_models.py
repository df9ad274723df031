"""x86 backend on whole models imported from ONNX: MiniLM (real weights) and the ResNet CNN.

Golden outputs come from PyTorch in the test; one build each, run at two batch shapes where
the model has symbolic dims.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from llmc.backends import x86
from llmc.frontends.onnx import import_onnx


@pytest.mark.slow
def test_minilm_symbolic_batch_seq(minilm_onnx_path, minilm_model, minilm_inputs):
    g = import_onnx(minilm_onnx_path)
    r = x86.build(g)
    assert "none" not in r.schedules.values()
    assert "matmul_packed" in r.schedules.values()
    ids, mask = minilm_inputs
    for rows in (slice(0, 3), slice(1, 2)):  # two batch sizes; row 1 alone has no padding
        i, m = ids[rows], mask[rows]
        keep = int(m.sum(1).max())
        i, m = i[:, :keep], m[:, :keep]  # and a shorter seq
        with torch.no_grad():
            want = minilm_model(i, m)
        want = (want[0] if isinstance(want, (tuple, list)) else
                getattr(want, "last_hidden_state", want)).numpy()
        got = x86.run(r, {"input_ids": i.numpy(), "attention_mask": m.numpy()}, g.constants)
        np.testing.assert_allclose(got[g.outputs[0]], want, rtol=1e-3, atol=2e-4)


def test_resnet_cnn(tmp_path, resnet_model):
    import models

    x = models.resnet_input(batch=2)
    path = models.export_onnx(resnet_model, (x,), tmp_path / "resnet.onnx", ["x"], ["logits"],
                              dynamic_axes={"x": {0: "batch"}})
    g = import_onnx(path)
    r = x86.build(g)
    assert "none" not in r.schedules.values()
    for batch in (2, 3):
        xb = models.resnet_input(batch=batch, seed=batch)
        with torch.no_grad():
            want = resnet_model(xb).numpy()
        got = x86.run(r, {g.inputs[0]: xb.numpy()}, g.constants)[g.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
