"""The ``rope`` op: inference, numpy reference vs transformers' formula, x86 and CUDA lowering.

The reference is checked against an independent formula (slices and concat, as transformers'
``apply_rotary_pos_emb``); the x86 kernel against the reference, static and symbolic.
"""
from __future__ import annotations

import numpy as np
import pytest

from llmc import dims as D
from llmc.backends import x86
from llmc.errors import LlmcError, ShapeError
from llmc.interpreter import run_reference
from llmc.ir import Graph

RNG = np.random.default_rng(0)


def _hf_rope(x, cos, sin):
    """transformers' apply_rotary_pos_emb for one tensor (rotate_half by slices + concat)."""
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    return x * cos + rot * sin


def _tables(batch, seq, e, theta=10000.0):
    """cos/sin [batch, 1, seq, E] for random positions, as the LLM graphs gather them."""
    inv = 1.0 / theta ** (np.arange(0, e, 2, dtype=np.float32) / e)
    pos = RNG.integers(0, 200, size=(batch, seq)).astype(np.float32)
    f = pos[..., None] * inv
    emb = np.concatenate([f, f], axis=-1)[:, None]
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def _graph(xs, cs, dtype="float32", name="rope"):
    g = Graph(name)
    x = g.add_input("x", dtype, xs)
    c = g.add_input("cos", dtype, cs)
    s = g.add_input("sin", dtype, cs)
    g.set_outputs(g.add_node("rope", [x, c, s], name="rope_q"))
    return g


@pytest.mark.parametrize("e", [2, 32, 64, 128])
def test_reference_matches_transformers_formula(e):
    x = RNG.standard_normal((2, 9, 3, e)).astype(np.float32)
    cos, sin = _tables(2, 3, e)
    g = _graph([2, 9, 3, e], [2, 1, 3, e])
    got = run_reference(g, {"x": x, "cos": cos, "sin": sin})[g.outputs[0]]
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, _hf_rope(x, cos, sin), rtol=1e-6, atol=1e-6)


def test_reference_matches_torch_rotate_half():
    torch = pytest.importorskip("torch")
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    x = RNG.standard_normal((1, 4, 5, 16)).astype(np.float32)
    cos, sin = _tables(1, 5, 16)
    q, _ = apply_rotary_pos_emb(torch.from_numpy(x), torch.from_numpy(x),
                                torch.from_numpy(cos[:, 0]), torch.from_numpy(sin[:, 0]))
    g = _graph([1, 4, 5, 16], [1, 1, 5, 16])
    got = run_reference(g, {"x": x, "cos": cos, "sin": sin})[g.outputs[0]]
    np.testing.assert_allclose(got, q.numpy(), rtol=1e-6, atol=1e-6)


def test_infer_symbolic_and_broadcast():
    b, s = D.sym("batch"), D.sym("seq")
    g = _graph([b, 9, s, 64], [b, 1, s, 64])
    assert str(g.types[g.outputs[0]]) == "float32[batch, 9, seq, 64]"
    g = _graph([1, 9, 1, 64], [4, 1, 3, 64])  # numpy broadcasting both ways
    assert g.types[g.outputs[0]].shape == (4, 9, 3, 64)
    g = _graph([2, 3, 8], [3, 1])  # one cos/sin per row: still x * cos + rot(x) * sin
    x, c, s_ = (RNG.standard_normal(sh).astype(np.float32) for sh in ([2, 3, 8], [3, 1], [3, 1]))
    got = run_reference(g, {"x": x, "cos": c, "sin": s_})[g.outputs[0]]
    np.testing.assert_allclose(got, _hf_rope(x, c, s_), rtol=1e-6)


@pytest.mark.parametrize("xs, cs, dtype, msg", [
    ([2, 3, 7], [2, 3, 7], "float32", r"node 'rope_q' \(rope\).*E = 7\).*even"),
    ([2, 3, D.sym("e")], [2, 3, D.sym("e")], "float32", r"rope_q.*static and even"),
    ([2, 3, 8], [2, 3, 8], "int32", r"rope_q.*float dtype"),
    ([2, 3, 8], [2, 4, 8], "float32", r"rope_q.*do not broadcast"),
])
def test_bad_inputs_name_the_node(xs, cs, dtype, msg):
    with pytest.raises(ShapeError, match=msg) as info:
        _graph(xs, cs, dtype)
    assert isinstance(info.value, LlmcError)


def test_mixed_dtypes_refused():
    g = Graph("mixed")
    x = g.add_input("x", "float32", [2, 8])
    c = g.add_input("cos", "float16", [2, 8])
    with pytest.raises(ShapeError, match=r"rope_k.*share a dtype"):
        g.add_node("rope", [x, c, c], name="rope_k")


def _check_x86(g, feeds, rtol=1e-5, atol=1e-5, result=None):
    result = result or x86.build(g)
    assert set(result.schedules.values()) == {"generic"}, result.schedules
    got = x86.run(result, feeds, g.constants)[g.outputs[0]]
    want = run_reference(g, feeds)[g.outputs[0]]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return result


@pytest.mark.parametrize("e", [32, 48, 64, 80, 128])  # 48, 80: E/2 not a multiple of 16 lanes
def test_x86_static(e):
    x = RNG.standard_normal((2, 9, 3, e)).astype(np.float32)
    cos, sin = _tables(2, 3, e)
    _check_x86(_graph([2, 9, 3, e], [2, 1, 3, e]), {"x": x, "cos": cos, "sin": sin})


def test_x86_symbolic_batch_and_seq_one_build():
    b, s = D.sym("batch"), D.sym("seq")
    g = _graph([b, 9, s, 64], [b, 1, s, 64])
    result = None
    for bv, sv in [(2, 3), (1, 1), (3, 17)]:  # prefill- and decode-shaped runs, one build
        x = RNG.standard_normal((bv, 9, sv, 64)).astype(np.float32)
        cos, sin = _tables(bv, sv, 64)
        result = _check_x86(g, {"x": x, "cos": cos, "sin": sin}, result=result)


def test_x86_small_e_and_float16():
    # E = 6: narrower than a vector (scalar loop); float16 computes in float32 and rounds once
    x = RNG.standard_normal((2, 5, 6)).astype(np.float32)
    cos, sin = RNG.standard_normal((2, 1, 6)).astype(np.float32), \
        RNG.standard_normal((2, 1, 6)).astype(np.float32)
    _check_x86(_graph([2, 5, 6], [2, 1, 6]), {"x": x, "cos": cos, "sin": sin})
    h = {k: v.astype(np.float16) for k, v in {"x": x, "cos": cos, "sin": sin}.items()}
    _check_x86(_graph([2, 5, 6], [2, 1, 6], "float16"), h, rtol=1e-3, atol=1e-3)


def test_cuda_lowering_builds():
    """The CUDA backend schedules the shared TE lowering (compile only: no GPU needed)."""
    from llmc.backends import cuda

    b, s = D.sym("batch"), D.sym("seq")
    r = cuda.build(_graph([b, 9, s, 64], [b, 1, s, 64]), arch="sm_80")
    assert r.schedules == {"rope_q": "dlight.fallback"}  # dlight's elementwise rule
