"""int8 weight-only linear layers (qlinear_int8_wo per channel, qlinear_int8_wo_grouped per
group of K rows): layout, quantizer, x86 kernel, pass / options, LLM decode.

The golden numbers are the numpy reference of the same graph (exact pipeline check) and the
float32 model (closeness: a per-channel int8 weight must barely move the logits of a
random-weight fp32 model, whose weights were never stored in a low-precision format).
"""
from __future__ import annotations

import numpy as np
import pytest

from llmc import dims as D
from llmc.errors import InputError, LlmcError, ShapeError
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.ops.quant_w8 import (dequant_int8_wo, dequant_int8_wo_grouped, pack_int8_wo,
                               pack_int8_wo_grouped, quantize_weight_int8_wo,
                               quantize_weight_int8_wo_grouped, unpack_int8_wo,
                               unpack_int8_wo_grouped)

from .llm_helpers import compile_to, hf_greedy, reference_greedy

RNG = np.random.default_rng(0)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_pack_roundtrip_and_layout():
    codes = RNG.integers(-127, 128, (24, 40)).astype(np.int8)
    p = pack_int8_wo(codes)
    assert p.shape == (2, 24, 32) and p.dtype == np.int8
    assert p[1, 5, 3] == codes[5, 32 + 3]
    assert not p[1, :, 8:].any()                      # padded columns are zero
    np.testing.assert_array_equal(unpack_int8_wo(p, 40), codes)


def test_quantizer_is_per_channel_symmetric():
    w = RNG.standard_normal((96, 48)).astype(np.float32)
    w[:, 3] *= 100.0                                  # one loud column must not hurt the others
    w[:, 7] = 0.0                                     # an all-zero column stays exact
    p, s = quantize_weight_int8_wo(w)
    assert s.shape == (48,) and s.dtype == np.float32
    wd = dequant_int8_wo(p, s)
    np.testing.assert_allclose(np.abs(w).max(0), np.abs(wd).max(0), rtol=1e-6)
    err = np.abs(wd - w).max(0)
    assert np.all(err <= s / 2 + 1e-7)               # round to nearest: half a step at most
    assert not wd[:, 7].any()
    assert np.abs(unpack_int8_wo(p, 48)).max() == 127


@pytest.mark.parametrize("lead,K,N,bias", [((1,), 64, 96, True), ((D.sym("b"), 5), 128, 64,
                                                                    False),
                                            ((D.sym("b"), 9), 96, 40, True)])
def test_x86_kernel_matches_reference(lead, K, N, bias):
    from llmc.backends import x86

    g = Graph("q8wo")
    x = g.add_input("x", "float32", [*lead, K])
    p, s = quantize_weight_int8_wo(RNG.standard_normal((K, N)).astype(np.float32))
    ins = [x, g.add_constant(p, "w"), g.add_constant(s, "s")]
    if bias:
        ins.append(g.add_constant(RNG.standard_normal(N).astype(np.float32), "bias"))
    g.set_outputs(g.add_node("qlinear_int8_wo", ins, {"n": N, "k": K}))
    g.verify()
    r = x86.build(g)
    assert set(r.schedules.values()) == {"matmul_packed"}, r.schedules
    shape = tuple(2 if not isinstance(d, int) else d for d in lead) + (K,)
    xin = {"x": RNG.standard_normal(shape).astype(np.float32)}
    got = x86.run(r, xin, g.constants)[g.outputs[0]]
    want = run_reference(g, xin)[g.outputs[0]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    ref = xin["x"] @ dequant_int8_wo(p, s) + (g.constants["bias"] if bias else 0)
    np.testing.assert_allclose(want, ref, rtol=1e-4, atol=1e-4)


def test_graph_logits_stay_close_to_fp32(llama_model):
    """Reference interpreter: int8-wo prefill logits vs the fp32 graph's, and far closer than
    int4's (g32) on the same fp32 random-weight model (no TVM)."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import MASK_MIN, build_graph
    from llmc.passes.int4 import quantize_int4
    from llmc.passes.int8_weight_only import quantize_int8_wo

    spec = from_transformers(llama_model)
    pre = build_graph(spec, "prefill", max_position=64)
    q, info = quantize_int8_wo(pre)
    q.verify()
    assert {x["precision"] for x in info["layers"]} == {"int8"}
    assert not any(n.op == "matmul" and n.inputs[1] in q.constants for n in q.nodes)
    S = 9
    feed = {"input_ids": np.random.default_rng(1).integers(0, 128, (1, S)),
            "positions": np.arange(S)[None],
            "mask": np.triu(np.full((S, S), MASK_MIN, np.float32), 1)[None, None]}
    a = run_reference(pre, feed)["logits"]
    b = run_reference(q, feed)["logits"]
    c = run_reference(quantize_int4(pre, 32)[0], feed)["logits"]
    rel8 = np.linalg.norm(b - a) / np.linalg.norm(a)
    rel4 = np.linalg.norm(c - a) / np.linalg.norm(a)
    assert _cos(a, b) > 0.99 and rel8 < 0.1   # the tiny 0.3-init model amplifies errors
    assert rel8 < rel4 / 4
    assert int(np.argmax(a)) == int(np.argmax(b))


@pytest.mark.slow
def test_int8_artifact_generates_like_its_reference_and_close_to_fp32(llama_model, tmp_path):
    """Compiled int8-wo greedy tokens equal the numpy reference of the same graphs token for
    token, and start like transformers' fp32 greedy decoding."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph
    from llmc.passes.int8_weight_only import quantize_int8_wo
    from llmc.runtime.llm import load_llm

    llm = load_llm(compile_to(llama_model, tmp_path / "int8.llmc", max_context=64,
                              weights="int8"))
    assert llm.manifest["llm"]["weights"] == "int8"
    assert llm.manifest["llm"]["quantized_layers"] == 2 * 4 + 1   # qkv, o, gate_up, down + head
    prompt, n = [5, 7, 9, 11, 3], 16
    got = llm.generate(prompt, n, stop_tokens=[])
    spec = from_transformers(llama_model)
    pre, _ = quantize_int8_wo(build_graph(spec, "prefill", max_position=64))
    dec, _ = quantize_int8_wo(build_graph(spec, "decode", max_position=64))
    want = reference_greedy(pre, dec, prompt, n, spec.num_layers)
    assert got == want
    assert got[:8] == hf_greedy(llama_model, prompt, 8)


# ----------------------------------------------------------------------------- group-wise
def test_grouped_pack_roundtrip_and_layout():
    codes = RNG.integers(-127, 128, (24, 100)).astype(np.int8)
    p = pack_int8_wo_grouped(codes)
    assert p.shape == (2, 24, 64) and p.dtype == np.int8
    assert p[1, 5, 3] == codes[5, 64 + 3] and p[0, 7, 63] == codes[7, 63]
    assert not p[1, :, 36:].any()                     # padded columns are zero
    np.testing.assert_array_equal(unpack_int8_wo_grouped(p, 100), codes)


@pytest.mark.parametrize("G", [32, 128])
def test_grouped_quantizer_error_is_half_a_step_per_group(G):
    K, N = 4 * G, 70
    w = RNG.standard_normal((K, N)).astype(np.float32)
    w[:G, 5] = 0.0                                    # an all-zero group stays exact
    w[G:2 * G, 9] *= 1e6                              # a huge group does not touch the others
    p, s = quantize_weight_int8_wo_grouped(w, G)
    assert p.shape == (2, K, 64) and s.shape == (2, 4, 64) and s.dtype == np.float32
    assert not s[1, :, N - 64:].any()                 # padded columns: scale 0
    wd = dequant_int8_wo_grouped(p, s, N)
    step = np.repeat(s.transpose(1, 0, 2).reshape(K // G, -1)[:, :N], G, axis=0)
    assert np.all(np.abs(wd - w) <= step / 2 * (1 + 1e-6))   # round to nearest, per group
    grp = lambda a: np.abs(a).reshape(K // G, G, N).max(1)  # noqa: E731
    np.testing.assert_allclose(grp(wd), grp(w), rtol=1e-6)   # each group's max is exact
    assert not wd[:G, 5].any()
    codes = unpack_int8_wo_grouped(p, N).astype(np.int32)
    assert grp(codes)[0, 9] == 127 and grp(codes)[1, 9] == 127
    assert np.abs(wd[2 * G:, 9] - w[2 * G:, 9]).max() < 0.05  # the huge group stays its own
    with pytest.raises(ShapeError, match="not a multiple of the group size 96"):
        quantize_weight_int8_wo_grouped(w, 96)


def test_grouped_error_beats_per_channel_with_an_outlier_group():
    K, N, G = 256, 48, 32
    w = RNG.standard_normal((K, N)).astype(np.float32)
    w[64:96, 11] *= 50.0                              # one loud group in one column
    pc = dequant_int8_wo(*quantize_weight_int8_wo(w))
    gw = dequant_int8_wo_grouped(*quantize_weight_int8_wo_grouped(w, G), N)
    err_pc, err_gw = np.abs(pc - w), np.abs(gw - w)
    assert err_gw.sum() < err_pc.sum()
    quiet = np.r_[0:64, 96:K]                         # the rest of that column
    assert err_gw[quiet, 11].max() * 10 < err_pc[quiet, 11].max()
    x = RNG.standard_normal((4, K)).astype(np.float32)
    assert np.linalg.norm(x @ gw - x @ w) < np.linalg.norm(x @ pc - x @ w)


def _grouped_graph(lead, K, N, G, bias):
    g = Graph("q8wog")
    x = g.add_input("x", "float32", [*lead, K])
    p, s = quantize_weight_int8_wo_grouped(RNG.standard_normal((K, N)).astype(np.float32), G)
    ins = [x, g.add_constant(p, "w"), g.add_constant(s, "s")]
    if bias:
        ins.append(g.add_constant(RNG.standard_normal(N).astype(np.float32), "bias"))
    g.set_outputs(g.add_node("qlinear_int8_wo_grouped", ins, {"n": N, "k": K, "group_size": G}))
    g.verify()
    return g, p, s


@pytest.mark.parametrize("lead,K,N,G,bias", [
    ((1,), 128, 96, 32, True), ((1,), 256, 200, 128, False),
    ((D.sym("b"), 5), 128, 64, 128, True), ((D.sym("b"), 5), 96, 130, 32, False),
    ((D.sym("b"), 9), 256, 72, 32, True), ((D.sym("b"), 9), 128, 64, 128, False)])
def test_grouped_x86_kernel_matches_reference(lead, K, N, G, bias):
    """M=1 (decode GEMV), and symbolic rows b*5 / b*9: tail only (b=1, 5 rows), full 8-row
    tiles + tail (b=2: 10 and 18 rows; b=1: 9 rows)."""
    from llmc.backends import x86

    g, p, s = _grouped_graph(lead, K, N, G, bias)
    r = x86.build(g)
    assert set(r.schedules.values()) == {"quant_int4"}, r.schedules
    for b in ([1, 2] if not isinstance(lead[0], int) else [None]):
        shape = tuple(b if not isinstance(d, int) else d for d in lead) + (K,)
        xin = {"x": RNG.standard_normal(shape).astype(np.float32)}
        got = x86.run(r, xin, g.constants)[g.outputs[0]]
        want = run_reference(g, xin)[g.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        ref = xin["x"] @ dequant_int8_wo_grouped(p, s, N) + (g.constants["bias"] if bias else 0)
        np.testing.assert_allclose(want, ref, rtol=1e-4, atol=1e-4)


def test_grouped_op_rejects_wrong_layouts():
    g = Graph("q8wog")
    x = g.add_input("x", "float32", [1, 64])
    w = g.add_constant(np.zeros((1, 64, 64), np.int8), "w")
    with pytest.raises(ShapeError, match=r"scales must be float32 \[1, 2, 64\]"):
        g.add_node("qlinear_int8_wo_grouped", [x, w, g.add_constant(
            np.ones((64,), np.float32), "s")], {"n": 64, "k": 64, "group_size": 32})
    with pytest.raises(ShapeError, match="group_size 48 must divide k=64"):
        g.add_node("qlinear_int8_wo_grouped", [x, w, g.add_constant(
            np.ones((1, 1, 64), np.float32), "s2")], {"n": 64, "k": 64, "group_size": 48})


def _linear_graph(k: int, n: int) -> Graph:
    g = Graph("lin")
    x = g.add_input("x", "float32", [2, k])
    y = g.add_node("matmul", [x, g.add_constant(RNG.standard_normal((k, n)).astype(np.float32),
                                                 "w")], name="proj")
    g.set_outputs(y)
    return g


def test_pass_group_sizes_fallback_and_refusal(llama_model):
    """int4's rule: the given size, else the largest of 64/32 dividing K; per-channel without a
    size; a K that none divides and an unknown size are refused."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph
    from llmc.passes.int8_weight_only import quantize_int8_wo

    pre = build_graph(from_transformers(llama_model), "prefill", max_position=64)
    q, info = quantize_int8_wo(pre, group_size=128)   # K = 64 (hidden) and 96 (down_proj)
    q.verify()
    by_k = {(x["k"], x["precision"], x["group_size"]) for x in info["layers"]}
    assert by_k == {(64, "int8/g64", 64), (96, "int8/g32", 32)}
    ops = [n for n in q.nodes if n.op.startswith("qlinear")]
    assert ops and {n.op for n in ops} == {"qlinear_int8_wo_grouped"}
    assert {n.attrs["group_size"] for n in ops} == {32, 64}
    _, info = quantize_int8_wo(pre)
    assert {(x["precision"], x["group_size"]) for x in info["layers"]} == {("int8", None)}
    with pytest.raises(InputError, match=r"'proj' has K=80"):
        quantize_int8_wo(_linear_graph(80, 16), group_size=32)
    with pytest.raises(InputError, match="one of"):
        quantize_int8_wo(_linear_graph(64, 16), group_size=48)
    g = _linear_graph(80, 16)                          # per channel takes any K
    q, _ = quantize_int8_wo(g)
    x = {"x": RNG.standard_normal((2, 80)).astype(np.float32)}
    np.testing.assert_allclose(run_reference(q, x)[q.outputs[0]], run_reference(g, x)[g.outputs[0]],
                               rtol=0.05, atol=0.1)


def test_group_size_options_and_cli(llama_model):
    from llmc.cli import build_parser
    from llmc.frontends.hf import from_transformers
    from llmc.llm import LLMCompileOptions, compile_llm

    assert LLMCompileOptions().group_size is None
    with pytest.raises(LlmcError, match="needs int8 or int4 weights"):
        compile_llm(from_transformers(llama_model), LLMCompileOptions(group_size=64))
    a = build_parser().parse_args(["compile-llm", "m", "--weights", "int8", "--group-size", "64"])
    assert (a.weights, a.group_size) == ("int8", 64)
    assert build_parser().parse_args(["compile-llm", "m"]).group_size is None


def test_grouped_graph_logits_close_to_fp32_and_per_channel(llama_model):
    """Reference interpreter: int8 g32 prefill logits stay close to the fp32 graph's, about as
    close as per-channel int8's and far closer than int4 g32's."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import MASK_MIN, build_graph
    from llmc.passes.int4 import quantize_int4
    from llmc.passes.int8_weight_only import quantize_int8_wo

    pre = build_graph(from_transformers(llama_model), "prefill", max_position=64)
    S = 9
    feed = {"input_ids": np.random.default_rng(1).integers(0, 128, (1, S)),
            "positions": np.arange(S)[None],
            "mask": np.triu(np.full((S, S), MASK_MIN, np.float32), 1)[None, None]}
    a = run_reference(pre, feed)["logits"]
    rel = {}
    for name, q in (("g32", quantize_int8_wo(pre, group_size=32)[0]),
                    ("pc", quantize_int8_wo(pre)[0]), ("int4", quantize_int4(pre, 32)[0])):
        b = run_reference(q, feed)["logits"]
        rel[name] = np.linalg.norm(b - a) / np.linalg.norm(a)
    assert rel["g32"] < 0.1 and rel["g32"] < rel["int4"] / 4
    assert rel["g32"] < rel["pc"] * 1.5, rel


def test_grouped_int8_artifact_generates_like_its_reference(llama_model, tmp_path):
    """Compiled int8 g32 greedy tokens equal the numpy reference of the same graphs."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph
    from llmc.passes.int8_weight_only import quantize_int8_wo
    from llmc.runtime.llm import load_llm

    llm = load_llm(compile_to(llama_model, tmp_path / "int8g.llmc", max_context=64,
                              weights="int8", group_size=32))
    cfg = llm.manifest["llm"]
    assert cfg["weights"] == "int8" and cfg["quantized_layers"] == 2 * 4 + 1
    assert len(cfg["layer_precisions"]) == 2 * 4 + 1      # one entry per linear layer
    assert set(cfg["layer_precisions"].values()) == {"int8/g32"}
    prompt, n = [5, 7, 9, 11, 3], 12
    got = llm.generate(prompt, n, stop_tokens=[])
    spec = from_transformers(llama_model)
    pre, _ = quantize_int8_wo(build_graph(spec, "prefill", max_position=64), group_size=32)
    dec, _ = quantize_int8_wo(build_graph(spec, "decode", max_position=64), group_size=32)
    assert got == reference_greedy(pre, dec, prompt, n, spec.num_layers)
