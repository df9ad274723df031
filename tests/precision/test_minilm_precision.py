"""Every precision mode on the real MiniLM (all-MiniLM-L6-v2 weights) stays within its stated
error against the fp32 model, and the compiled x86 kernels agree with the numpy reference.

Stated errors (cosine of last_hidden_state vs fp32, measured on the shipped sentences):
fp16 >= 0.9999, bf16 >= 0.9995, int4 (g32) >= 0.94, int8 with a cosine:0.99 budget >= 0.99
(the budget puts the most sensitive layers back to fp32).
"""
from __future__ import annotations

import numpy as np
import pytest

from llmc.accuracy import accuracy_report
from llmc.calibration import load_batches, save_batches
from llmc.interpreter import run_reference
from llmc.passes import run_passes
from llmc.passes.precision import apply_precision

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_graph():
    from llmc.frontend import import_model
    from tests.models import minilm, minilm_tokenize
    ids, mask = minilm_tokenize()
    g = import_model(minilm(), (ids, mask))
    g, _ = run_passes(g, passes=["constant_fold", "simplify", "constant_fold", "cse", "dce"])
    feed = dict(zip(["input_ids", "attention_mask"], [ids.numpy(), mask.numpy()]))
    batch = {n: feed[n] for n in g.inputs}
    return g, batch


@pytest.mark.parametrize("precision,kw,min_cos", [
    ("fp16", {}, 0.9999),
    ("bf16", {}, 0.9995),
    ("int4", {"group_size": 32}, 0.94),
    ("int8", {"calibrator": "percentile", "smoothquant": True,
              "accuracy_budget": "cosine:0.99"}, 0.99),
])
def test_mode_within_stated_error(minilm_graph, tmp_path, precision, kw, min_cos):
    g, batch = minilm_graph
    path = save_batches(tmp_path / "calib.npz", [batch])
    assert load_batches(path, g)[0].keys() == batch.keys()
    q, info = apply_precision(g, precision, path, **kw)
    rep = accuracy_report(g, q, [batch], precision, info=info)
    (m,) = rep.outputs.values()
    assert m["cosine"] >= min_cos, rep.format()
    assert rep.size_bytes < rep.size_fp32_bytes
    if "accuracy_budget" in kw:
        assert info["budget"]["met"], rep.format()
    rep.save(tmp_path / "report.json")


def test_int8_compiled_matches_reference(minilm_graph):
    """The compiled int8 model agrees with its numpy reference: the first layer to float
    rounding; the output far closer than int8 is to fp32. (Bit-exact agreement through six
    layers is not a property of the model: a 1-ulp difference upstream, e.g. the polynomial
    exp of the softmax, can move an activation across a rounding boundary, and one int8 code
    flip then propagates; measured: rel. L2 3% vs int8's own 43% (minmax) on one sentence.)"""
    from llmc.accuracy import output_metrics
    from llmc.backends import x86
    g, batch = minilm_graph
    q, _ = apply_precision(g, "int8", [batch], calibrator="minmax")
    first = next(n.outputs[0] for n in q.nodes if n.op == "qlinear_int8")
    q.outputs = list(q.outputs) + [first]
    r = x86.build(q)
    assert "quant_int8" in r.schedules.values()
    got = x86.run(r, batch, q.constants)
    want = run_reference(q, batch)
    np.testing.assert_allclose(got[first], want[first], rtol=1e-5, atol=1e-5)
    out = q.outputs[0]
    kernel = output_metrics([want[out]], [got[out]])
    quant = output_metrics([run_reference(g, batch)[g.outputs[0]]], [want[out]])
    assert kernel["cosine"] > 0.999, kernel
    assert kernel["rel_l2_error"] < 0.25 * quant["rel_l2_error"], (kernel, quant)
