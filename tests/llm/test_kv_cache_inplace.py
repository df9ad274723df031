"""The decode step writes its K/V rows into the runtime's cache tensors (``kv_cache_write``,
called in place) and attends over the first ``kv_len`` rows (``attention``'s ``kv_length``)."""
from __future__ import annotations

import numpy as np
import pytest

from llmc import dims as D
from llmc.errors import ArtifactError, InputError, ShapeError
from llmc.interpreter import run_reference
from llmc.ir import Graph

from .llm_helpers import decode_cache_feed


def test_kv_cache_write_reference_casts_and_refuses_overflow():
    g = Graph("w")
    kc = g.add_input("kc", "float16", [1, 2, 5, 4])
    vc = g.add_input("vc", "float16", [1, 2, 5, 4])
    kr = g.add_input("kr", "float32", [1, 2, 2, 4])
    vr = g.add_input("vr", "float32", [1, 2, 2, 4])
    outs = g.add_node("kv_cache_write", [kc, vc, kr, vr], {"offset": 3}, num_outputs=2)
    g.set_outputs(outs)
    assert [g.types[o].dtype for o in outs] == ["float16", "float16"]
    rng = np.random.default_rng(0)
    feed = {"kc": np.zeros((1, 2, 5, 4), np.float16), "vc": np.ones((1, 2, 5, 4), np.float16),
            "kr": rng.standard_normal((1, 2, 2, 4)).astype(np.float32),
            "vr": rng.standard_normal((1, 2, 2, 4)).astype(np.float32)}
    res = run_reference(g, feed)
    k2, v2 = res[outs[0]], res[outs[1]]
    np.testing.assert_array_equal(k2[:, :, 3:], feed["kr"].astype(np.float16))
    np.testing.assert_array_equal(v2[:, :, :3], 1)
    assert not feed["kc"].any()                     # the reference does not mutate its input
    g2 = Graph("overflow")
    ins = [g2.add_input(n, "float32", [1, 2, 5 if n.endswith("c") else 2, 4])
           for n in ("kc", "vc", "kr", "vr")]
    with pytest.raises(ShapeError, match="do not fit"):
        g2.add_node("kv_cache_write", ins, {"offset": 4}, num_outputs=2)


def _decode_attention_graph(kv_dtype: str) -> Graph:
    """q [b, 4, 1, 8] attending over a [b, 2, max_ctx, 8] cache after writing one row."""
    b, kv_len, ctx = D.sym("batch"), D.sym("kv_len"), D.sym("max_ctx")
    g = Graph("decode_attention")
    q = g.add_input("q", "float32", [b, 4, 1, 8])
    kn = g.add_input("k_new", "float32", [b, 2, 1, 8])
    vn = g.add_input("v_new", "float32", [b, 2, 1, 8])
    mask = g.add_input("mask", "float32", [b, 1, 1, kv_len])
    kc = g.add_input("k_cache", kv_dtype, [b, 2, ctx, 8])
    vc = g.add_input("v_cache", kv_dtype, [b, 2, ctx, 8])
    k2, v2 = g.add_node("kv_cache_write", [kc, vc, kn, vn], {"offset": kv_len - 1},
                        num_outputs=2)
    out = g.add_node("attention", [q, k2, v2, mask], {"kv_length": kv_len})
    g.set_outputs(out)
    g.verify()
    return g


@pytest.mark.parametrize("kv_dtype", ["float32", "float16"])
def test_compiled_decode_attention_writes_the_cache_in_place(kv_dtype):
    """x86: the cache tensors passed in hold the new row afterwards, the rows past kv_len are
    never read (they hold NaN here), and the output equals the reference."""
    import tvm

    import llmc

    g = _decode_attention_graph(kv_dtype)
    art = llmc.compile(g, "x86")
    entry = art.load()
    rng = np.random.default_rng(1)
    B, ctx = 2, 12
    cache_np = [rng.standard_normal((B, 2, ctx, 8)).astype(kv_dtype) for _ in range(2)]
    for past in (0, 5, ctx - 1):
        feed = {"q": rng.standard_normal((B, 4, 1, 8)).astype(np.float32),
                "k_new": rng.standard_normal((B, 2, 1, 8)).astype(np.float32),
                "v_new": rng.standard_normal((B, 2, 1, 8)).astype(np.float32),
                "mask": np.where(rng.random((B, 1, 1, past + 1)) < 0.2, -1e9, 0)
                .astype(np.float32)}
        feed["mask"][..., -1] = 0
        for c in cache_np:
            c[:, :, past + 1:] = np.nan              # never read
        want = run_reference(g, {**feed, "k_cache": cache_np[0], "v_cache": cache_np[1]})
        tensors = [tvm.runtime.tensor(c) for c in cache_np]
        got = entry._call_main([tvm.runtime.tensor(feed[n]) for n in
                                ("q", "k_new", "v_new", "mask")] + tensors)
        np.testing.assert_allclose(got[0].numpy(), want[g.outputs[0]], rtol=1e-5, atol=1e-5)
        for c, t, new in zip(cache_np, tensors, ("k_new", "v_new")):
            now = t.numpy()
            np.testing.assert_array_equal(now[:, :, past], feed[new][:, :, 0].astype(kv_dtype))
            np.testing.assert_array_equal(now[:, :, :past], c[:, :, :past])
            c[:, :, past] = now[:, :, past]


def test_compiled_write_past_the_cache_end_is_an_error_not_a_crash():
    import llmc

    entry = llmc.compile(_decode_attention_graph("float32"), "x86").load()
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ArtifactError, match="do not fit the KV cache"):
        entry.run(z(1, 4, 1, 8), z(1, 2, 1, 8), z(1, 2, 1, 8), z(1, 1, 1, 7), z(1, 2, 6, 8),
                  z(1, 2, 6, 8))


def test_runtime_cache_holds_the_reference_rows(llama_model, llama_llm):
    """After generate, the contiguous cache (TVM tensors seen by numpy) holds the K/V rows
    of the numpy reference of the same graphs: prompt rows and every decode step's row."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph

    spec = from_transformers(llama_model)
    pre = build_graph(spec, "prefill", max_position=160)
    dec = build_graph(spec, "decode", max_position=160)
    prompt, new = [5, 7, 9, 11], 6
    toks = llama_llm.generate(prompt, new, stop_tokens=[])
    S, L = len(prompt), spec.num_layers
    o = run_reference(pre, {"input_ids": np.array([prompt]), "positions": np.arange(S)[None],
                            "mask": np.triu(np.full((S, S), -1e9, np.float32), 1)[None, None]})
    cache = [o[f"{kv}_{i}"] for i in range(L) for kv in "kv"]
    for t, tok in enumerate(toks[:-1]):
        r = run_reference(dec, {"input_ids": np.array([[tok]]), "positions": np.array([[S + t]]),
                                "mask": np.zeros((1, 1, 1, S + t + 1), np.float32),
                                **decode_cache_feed(cache, dec)})
        cache = [np.concatenate([c, r[f"{kv}_{i}"]], axis=2)
                 for c, (i, kv) in zip(cache, [(i, kv) for i in range(L) for kv in "kv"])]
    got = llama_llm.last_cache.past(S + new - 1)
    for a, b in zip(got, cache):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_decode_refuses_a_cache_without_room(llama_llm):
    L = llama_llm.num_layers
    caches = [np.zeros((1, llama_llm.kv_heads, 4, llama_llm.head_dim), np.float32)] * (2 * L)
    with pytest.raises(InputError, match="has no row 4"):
        llama_llm.decode(np.array([[1]]), np.array([[4]]), np.zeros((1, 1, 1, 5), np.float32),
                         caches)


def test_artifact_of_the_older_decode_signature_is_refused(llama_artifact):
    from llmc.runtime.format import read_artifact
    from llmc.runtime.llm import LLM

    manifest, members = read_artifact(str(llama_artifact), "a")
    for i in manifest["entry_points"]["decode"]["inputs"]:
        i["name"] = i["name"].replace("k_cache_", "past_k_").replace("v_cache_", "past_v_")
    with pytest.raises(ArtifactError, match="older llmc"):
        LLM(manifest, members, "old.llmc")


def _has_gpu() -> bool:
    from llmc.backends.cuda import local_gpu_arch

    return local_gpu_arch() is not None


@pytest.fixture(scope="module")
def cuda_llama(llama_model, tmp_path_factory):
    """The tiny LLaMA compiled for CUDA (sm_80): both entries build, the cache write included."""
    from .llm_helpers import compile_to

    return compile_to(llama_model, tmp_path_factory.mktemp("cuda") / "llama_cuda.llmc",
                      max_context=64, target="cuda", arch="sm_80")


@pytest.mark.slow
def test_llm_compiles_for_cuda_with_bound_kernels(cuda_llama):
    from llmc.runtime.format import read_artifact

    manifest, _ = read_artifact(str(cuda_llama), "a")
    sched = manifest["target"]["schedules"]
    assert manifest["target"]["gpu_arch"] == "sm_80"
    assert sched["kv_cache_write"].startswith(("dlight.", "llmc.")), sched
    assert all(v != "none" for v in sched.values()), sched


def test_llm_cuda_refuses_quantized_weights_and_unknown_targets():
    from llmc.errors import LlmcError
    from llmc.llm import LLMCompileOptions, compile_llm

    with pytest.raises(LlmcError, match="x86-only"):
        compile_llm(None, LLMCompileOptions(target="cuda", weights="int8"))
    with pytest.raises(LlmcError, match="cannot run LLMs"):
        compile_llm(None, LLMCompileOptions(target="systolic"))


@pytest.mark.slow
@pytest.mark.skipif(not _has_gpu(), reason="no CUDA GPU here: run on a GPU machine "
                    "(bench/gpu_check.sh)")
def test_llm_generates_on_gpu_like_cpu(cuda_llama, llama_llm):
    from llmc.runtime.llm import load_llm

    gpu = load_llm(cuda_llama)
    prompt = [5, 7, 9, 11]
    assert gpu.generate(prompt, 16, stop_tokens=[]) == llama_llm.generate(prompt, 16,
                                                                         stop_tokens=[])


def test_small_kernels_of_a_decode_step_run_single_threaded():
    """small_dims=("batch",): norms, RoPE, adds, the split and the KV write are built without
    a parallel loop; the GEMVs (>= 32K weights) and attention (a symbolic cache) keep theirs."""
    from llmc.backends.x86 import build
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph
    from llmc.passes import run_passes

    from .llm_helpers import tiny_llama

    model = tiny_llama(hidden_size=256, intermediate_size=512, num_hidden_layers=1,
                       vocab_size=256)
    g, _ = run_passes(build_graph(from_transformers(model), "decode", max_position=64),
                      level="O3")
    sched = build(g, small_dims=("batch",)).schedules
    serial = {k for k, v in sched.items() if v.endswith("+serial")}
    kinds = {k.rstrip("_0123456789") for k in serial}
    assert {"rope", "fused_reduction", "split"} <= kinds, sched
    assert not any(k.startswith(("matmul", "attention")) for k in serial), sched
    assert sched["kv_cache_write"] == "kv_write"
    assert not any(v.endswith("+serial") for v in build(g).schedules.values())


@pytest.fixture(scope="module")
def int8_kv_llama(llama_model, tmp_path_factory):
    from .llm_helpers import compile_to

    return compile_to(llama_model, tmp_path_factory.mktemp("kv8") / "llama_kv8.llmc",
                      max_context=64, kv_dtype="int8")


@pytest.mark.slow
def test_int8_kv_cache_generates_like_its_reference(llama_model, int8_kv_llama, llama_llm):
    """kv_dtype="int8": compiled greedy tokens = the numpy reference of the same graphs, for
    the contiguous and the paged cache; the cache holds int8 codes and float32 row scales
    (a quarter of the fp32 bytes plus 1/head_dim); tokens stay close to the fp32 cache's."""
    from llmc.frontends.hf import from_transformers
    from llmc.llm_graph import build_graph
    from llmc.runtime.llm import load_llm

    from .llm_helpers import reference_greedy

    llm = load_llm(int8_kv_llama)
    spec = from_transformers(llama_model)
    pre = build_graph(spec, "prefill", kv_dtype="int8", max_position=64)
    dec = build_graph(spec, "decode", kv_dtype="int8", max_position=64)
    prompt, n = [5, 7, 9, 11, 3], 16
    want = reference_greedy(pre, dec, prompt, n, spec.num_layers)
    assert llm.generate(prompt, n, stop_tokens=[]) == want
    cache = llm.last_cache
    assert [b.dtype for b in cache.buffers[:4]] == [np.int8, np.int8, np.float32, np.float32]
    assert cache.buffers[2].shape[-1] == 1
    llama_llm.generate(prompt, 2, stop_tokens=[])
    fp32_bytes = llama_llm.last_timings["kv_cache_bytes"] * 64 / llama_llm.max_context
    hd = llm.head_dim                                  # int8 codes + one fp32 scale per row
    assert cache.nbytes == fp32_bytes * (hd + 4) / (4 * hd)
    assert llm.generate(prompt, n, stop_tokens=[], kv_cache="paged", block_size=4) == want
    same = sum(a == b for a, b in zip(want, llama_llm.generate(prompt, n, stop_tokens=[])))
    assert same >= n // 2, (want, same)


@pytest.mark.parametrize("weights", ["float32", "int8", "int8g64", "int4"])
def test_decode_gemv_kernels_are_one_parallel_region_and_exact(weights):
    """With small_dims=("batch",) a [batch, 1, K] @ W matmul is built GEMV-only: the output
    stage is computed in the panel loop (one parallel region), and it matches the reference
    for batch 1, 3 and 9 (rows beyond one register tile included)."""
    import tvm

    from llmc.backends.relax_builder import build_relax
    from llmc.backends.x86 import build
    from llmc.backends.x86.schedule import schedule_func
    from llmc.passes import run_passes
    from llmc.passes.int4 import quantize_int4
    from llmc.passes.int8_weight_only import quantize_int8_wo

    rng = np.random.default_rng(0)
    g = Graph("gemv")
    x = g.add_input("x", "float32", [D.sym("batch"), 1, 128])
    w = g.add_constant(rng.standard_normal((128, 96)).astype(np.float32), "w")
    b = g.add_constant(rng.standard_normal(96).astype(np.float32), "b")
    y = g.add_node("add", [g.add_node("matmul", [x, w])[0], b])
    g.set_outputs(y)
    if weights == "int4":
        g, _ = quantize_int4(g, group_size=64)
    elif weights != "float32":
        g, _ = quantize_int8_wo(g, group_size=64 if weights == "int8g64" else None)
    g, _ = run_passes(g, level="O3")    # fp32: matmul + bias become one fused kernel
    funcs = [f for f in build_relax(g, small_dims=("batch",)).mod.functions.values()
             if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(funcs) == 1
    text = schedule_func(funcs[0], str(funcs[0].attrs["llmc_kind"]))[0].script()
    assert text.count("T.parallel") == 1, text
    res = build(g, small_dims=("batch",))
    from llmc.backends.x86 import run as run_x86
    for batch in (1, 3, 9):
        xv = rng.standard_normal((batch, 1, 128)).astype(np.float32)
        want = run_reference(g, {"x": xv})[g.outputs[0]]
        got = run_x86(res, {"x": xv})[g.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
