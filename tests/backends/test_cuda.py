"""CUDA backend: every test model compiles for sm_80 on this CPU-only machine; the kernels are
the expected ones (dlight/llmc schedules, launch bounds, tensor-core instructions for fp16
matmul); the exported library holds SASS for the chosen arch and no CUDA source; loading picks
the GPU or fails clearly. Run-time checks against PyTorch skip (with the reason) without a GPU.

Each model is imported and built once per session (nvcc takes seconds per model). The first
fp16 tensor-core build imports TVM's CUDA tensor intrinsics (~30-90 s here), hence ``slow``.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

import llmc
from llmc.backends import cuda, get_backend
from llmc.backends.cuda.cubin import fatbin_entries
from llmc.errors import ArtifactError, BackendError
from llmc.frontends.onnx import import_onnx
from llmc.frontends.torch import import_torch
from llmc.ir import Graph
from llmc.passes import run_passes

ARCH = "sm_80"
HAS_GPU = cuda.local_gpu_arch() is not None
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU on this machine (TVM runtime "
                               "sees none): run-time checks run on a GPU machine "
                               "(bench/gpu_check.sh)")
EXAMPLE_BERT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "models",
                            "tiny_bert.onnx")


def _build(graph: Graph, arch: str = ARCH):
    graph, _ = run_passes(graph, level="O3")
    return graph, cuda.build(graph, arch=arch)


def _export(result, tmp_path) -> bytes:
    path = tmp_path / "model.so"
    result.executable.export_library(str(path))
    return path.read_bytes()


# ----------------------------------------------------------------------------- models, once
def _torch_case(name: str):
    import models

    if name == "resnet_cnn":
        m, x = models.resnet_cnn(), models.resnet_input(batch=2)
    elif name == "gpt2_block":
        m, x = models.gpt2_block(), models.gpt2_input()
    elif name == "llama_block":
        m, x = models.llama_block(), torch.randn(2, 8, 64, generator=torch.Generator().manual_seed(0))
    elif name == "gpt2_block_bf16":
        m, x = models.gpt2_block().to(torch.bfloat16), models.gpt2_input().to(torch.bfloat16)
    elif name == "gpt2_block_fp16":  # M = 2*64 > 64: the tensor-core path
        m, x = models.gpt2_block().half(), models.gpt2_input(batch=2, seq=64).half()
    else:
        raise KeyError(name)
    return m, (x,)


class _Builds:
    """Session cache: model name -> (graph after passes, BuildResult, model, example inputs)."""

    def __init__(self, onnx_paths) -> None:
        self.cache: dict = {}
        self.onnx_paths = onnx_paths

    def get(self, name: str):
        if name not in self.cache:
            if name in self.onnx_paths:
                model, inputs = None, None
                g = import_onnx(self.onnx_paths[name]())
            else:
                model, inputs = _torch_case(name)
                g = import_torch(model, inputs)
            g, r = _build(g)
            self.cache[name] = (g, r, model, inputs)
        return self.cache[name]


@pytest.fixture(scope="session")
def cuda_builds(request) -> _Builds:
    return _Builds({"minilm_onnx": lambda: request.getfixturevalue("minilm_onnx_path"),
                    "tiny_bert_onnx": lambda: EXAMPLE_BERT})


FAST_MODELS = ["resnet_cnn", "gpt2_block", "llama_block", "gpt2_block_bf16", "tiny_bert_onnx"]
SLOW_MODELS = ["minilm_onnx"]
ALL_MODELS = FAST_MODELS + [pytest.param(m, marks=pytest.mark.slow) for m in SLOW_MODELS]


# ----------------------------------------------------------------------------- target and arch
def test_registered_and_arch_resolution():
    assert get_backend("cuda") is cuda
    assert cuda.resolve_arch("sm_90") == "sm_90"
    assert cuda.resolve_arch("86") == "sm_86"
    local = cuda.local_gpu_arch()
    assert cuda.resolve_arch(None) == (local if local in cuda.ARCHS else "sm_80")
    with pytest.raises(BackendError, match="unsupported CUDA --arch 'sm_75'"):
        cuda.resolve_arch("sm_75")


# ----------------------------------------------------------------------------- every model
@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_compiles_to_sass_without_source(name, cuda_builds, tmp_path):
    g, r, _, _ = cuda_builds.get(name)
    assert r.arch == ARCH and r.kernels
    assert "none" not in r.schedules.values(), r.schedules
    # reductions and matmuls get dlight's GPU rules, not the serial fallbacks
    assert any(v == "dlight.matmul" for v in r.schedules.values()) or name == "resnet_cnn"
    lib = _export(r, tmp_path)
    assert b"__global__" not in lib and b"extern \"C\"" not in lib, "CUDA source in the library"
    assert fatbin_entries(lib) == [("sass", 80)], "expected one sm_80 cubin and no PTX to JIT"


def test_schedules_by_kind(cuda_builds):
    _, r, _, _ = cuda_builds.get("gpt2_block")
    used = set(r.schedules.values())
    assert {"dlight.matmul", "dlight.fallback"} <= used
    assert used & {"dlight.reduction", "dlight.general_reduction"}  # layer norm / softmax
    # fused attention (several reductions in one kernel): llmc's own per-block rule
    _, r, _, _ = cuda_builds.get("llama_block")
    att = [k for k in r.schedules if "attention" in k]
    assert att and all(r.schedules[k] == "llmc.per_block" for k in att), r.schedules


def test_launch_bounds_in_source_and_ptx(cuda_builds):
    _, r, _, _ = cuda_builds.get("gpt2_block")
    src = "\n".join(r.cuda_sources)
    kernels = re.findall(r'extern "C" __global__ void (__launch_bounds__\(\d+\) )?(\w+)\(', src)
    assert kernels and all(lb for lb, _ in kernels), "every kernel declares __launch_bounds__"
    ptx = r.ptx()
    entries = re.findall(r"\.entry (\w+)\(", ptx)
    assert len(entries) == len({k for _, k in kernels})
    assert ptx.count(".maxntid") == len(entries)
    assert ".target sm_80" in ptx


def test_gemv_for_decode():
    g = Graph("decode")
    x = g.add_input("x", "float32", [1, 512])
    w = g.add_constant(np.random.default_rng(0).standard_normal((512, 1024)).astype("float32"), "w")
    (y,) = g.add_node("matmul", [x, w])
    g.set_outputs([y])
    r = cuda.build(g, arch=ARCH)
    assert set(r.schedules.values()) <= {"dlight.gemv", "dlight.general_reduction",
                                         "dlight.reduction", "dlight.matmul"}
    assert "dlight.fallback" not in r.schedules.values()


@pytest.mark.slow
def test_fp16_matmul_uses_tensor_cores(tmp_path):
    # one linear layer, M = 128 and N, K > 64 (dlight's tensor-core threshold); the whole fp16
    # GPT-2 block builds too but takes minutes here (it runs on GPU machines, below)
    g = Graph("linear_fp16")
    x = g.add_input("x", "float16", [128, 256])
    w = g.add_constant(np.random.default_rng(0).standard_normal((256, 512)).astype("float16"), "w")
    (y,) = g.add_node("matmul", [x, w])
    g.set_outputs([y])
    r = cuda.build(g, arch=ARCH)
    assert set(r.schedules.values()) == {"dlight.matmul"}
    assert fatbin_entries(_export(r, tmp_path)) == [("sass", 80)]
    ptx = r.ptx()
    assert "wmma.mma.sync" in ptx or "mma.sync" in ptx, "fp16 matmul without tensor cores"
    assert "wmma.load" in ptx


def test_other_arch_and_int8_refused(tmp_path):
    g = Graph("mm")
    x = g.add_input("x", "float32", [4, 64])
    w = g.add_constant(np.ones((64, 32), np.float32), "w")
    (y,) = g.add_node("matmul", [x, w])
    g.set_outputs([y])
    r = cuda.build(g, arch="sm_90")
    assert fatbin_entries(_export(r, tmp_path)) == [("sass", 90)]
    q = Graph("q")
    x = q.add_input("x", "int8", [4, 64])
    w = q.add_constant(np.ones((64, 32), np.int8), "w")
    (y,) = q.add_node("matmul", [x, w])
    q.set_outputs([y])
    with pytest.raises(BackendError, match="int8/int4 weight-only"):
        cuda.build(q, arch=ARCH)


# ----------------------------------------------------------------------------- artifact, load
@pytest.fixture(scope="session")
def gpt2_artifact():
    import models

    return llmc.compile(models.gpt2_block(), target="cuda", example_inputs=(models.gpt2_input(),))


def test_artifact_manifest(gpt2_artifact):
    t = gpt2_artifact.manifest["target"]
    assert t["name"] == "cuda" and t["device"] == "cuda"
    assert t["gpu_arch"] == cuda.resolve_arch(None) and t["kernel_format"] == "fatbin"
    lib = gpt2_artifact.members[gpt2_artifact.manifest["library"]]
    assert b"__global__" not in lib and fatbin_entries(lib)[0][0] == "sass"


@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU error; this machine has a GPU")
def test_load_without_gpu_fails_clearly(gpt2_artifact, tmp_path):
    path = gpt2_artifact.save(tmp_path / "gpt2.llmc")
    with pytest.raises(ArtifactError, match="no usable CUDA GPU"):
        llmc.load(path)


def test_load_arch_mismatch_fails_clearly(monkeypatch):
    import tvm.runtime

    from llmc.runtime.loader import check_gpu

    class FakeGPU:
        exist = True
        compute_version = "8.6"

    monkeypatch.setattr(tvm.runtime, "cuda", lambda i=0: FakeGPU())
    with pytest.raises(ArtifactError, match="built for GPU arch sm_90, this GPU is sm_86"):
        check_gpu({"device": "cuda", "gpu_arch": "sm_90"}, "m.llmc")
    check_gpu({"device": "cuda", "gpu_arch": "sm_86"}, "m.llmc")  # matching arch passes


# ----------------------------------------------------------------------------- on a GPU
def _torch_ref(model, inputs) -> np.ndarray:
    with torch.no_grad():
        out = model(*inputs)
    return out.float().numpy()


@needs_gpu
@pytest.mark.parametrize("name,rtol,atol", [("resnet_cnn", 1e-3, 1e-3), ("gpt2_block", 1e-3, 1e-3),
                                            ("llama_block", 1e-3, 1e-3),
                                            ("gpt2_block_bf16", 5e-2, 5e-2),
                                            pytest.param("gpt2_block_fp16", 2e-2, 2e-2,
                                                         marks=pytest.mark.slow)])
def test_runs_on_gpu_like_torch(name, rtol, atol, cuda_builds):
    local = cuda.local_gpu_arch()
    g, _, model, inputs = cuda_builds.get(name)
    r = cuda.build(g, arch=local) if local != ARCH else cuda_builds.get(name)[1]
    got = cuda.run(r, {g.inputs[0]: inputs[0].numpy() if inputs[0].dtype != torch.bfloat16
                       else inputs[0].view(torch.int16).numpy().view(_bf16())})
    out = got[g.outputs[0]].astype(np.float32)
    want = _torch_ref(model.float(), tuple(t.float() for t in inputs))
    np.testing.assert_allclose(out, want, rtol=rtol, atol=atol)


def _bf16():
    import ml_dtypes
    return ml_dtypes.bfloat16


@needs_gpu
def test_llmc_load_runs_on_gpu(tmp_path, minilm_onnx_path, minilm_model, minilm_inputs):
    art = llmc.compile(str(minilm_onnx_path), target="cuda")
    m = llmc.load(art.save(tmp_path / "minilm.llmc"))
    ids, mask = minilm_inputs
    got = m.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        want = minilm_model(ids, mask)
    want = getattr(want, "last_hidden_state", want[0] if isinstance(want, tuple) else want).numpy()
    np.testing.assert_allclose(list(got.values())[0], want, rtol=1e-3, atol=1e-3)


@needs_gpu
def test_onnx_artifact_save_load_runs_on_gpu(tmp_path):
    """The whole user path on a GPU without the MiniLM weights package: ONNX with dynamic batch
    and seq -> --target cuda -> .llmc -> load -> run, at two shapes, against PyTorch."""
    import models

    model = models.minilm_shaped()
    g = torch.Generator().manual_seed(0)
    ids, mask = torch.randint(0, 30000, (2, 16), generator=g), torch.ones(2, 16, dtype=torch.int64)
    mask[1, 10:] = 0
    path = models.export_onnx(model, (ids, mask), tmp_path / "m.onnx",
                              ["input_ids", "attention_mask"], ["last_hidden_state"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                            "attention_mask": {0: "batch", 1: "seq"}})
    m = llmc.load(llmc.compile(str(path), target="cuda").save(tmp_path / "m.llmc"))
    for b, s in ((2, 16), (3, 40)):
        ids = torch.randint(0, 30000, (b, s), generator=g)
        mask = torch.ones(b, s, dtype=torch.int64)
        got = list(m.run({"input_ids": ids.numpy(), "attention_mask": mask.numpy()}).values())[0]
        with torch.no_grad():
            want = model(ids, mask).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
