"""--target arm64: an aarch64 NEON library that refuses to load here and runs under qemu-aarch64."""
from __future__ import annotations

import subprocess
import zipfile

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import llmc
from llmc.errors import ArtifactError
from llmc.interpreter import run_reference

from .conftest import CPP, cmake_build, edge_graph, need_tool, run_cpp

EM_AARCH64 = 183


@pytest.fixture(scope="module")
def edge_arm64(tmp_path_factory):
    need_tool("aarch64-linux-gnu-g++")
    path = tmp_path_factory.mktemp("arm64") / "edge-arm64.llmc"
    llmc.compile(edge_graph(), target="arm64").save(path)
    return path


def _library(path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read("lib/model.so")


def test_arm64_artifact_is_aarch64_neon_and_refused_here(edge_arm64, tmp_path):
    art_manifest = llmc.runtime.format.read_artifact(str(edge_arm64), "t")[0]
    target = art_manifest["target"]
    assert target["name"] == "arm64" and target["arch"] == "aarch64"
    assert target["tvm_target"]["mtriple"] == "aarch64-linux-gnu"
    assert "+neon" in target["tvm_target"]["mattr"]
    lib = _library(edge_arm64)
    assert lib[:4] == b"\x7fELF" and lib[4] == 2  # ELF64
    assert int.from_bytes(lib[18:20], "little") == EM_AARCH64
    so = tmp_path / "model.so"
    so.write_bytes(lib)
    dis = subprocess.run([need_tool("aarch64-linux-gnu-objdump"), "-d", str(so)],
                         capture_output=True, text=True, check=True).stdout
    assert "fmla" in dis and ".4s" in dis  # NEON fused multiply-add on 4 fp32 lanes
    with pytest.raises(ArtifactError, match="built for aarch64.*this machine is"):
        llmc.load(edge_arm64)


@pytest.mark.slow
def test_arm64_runs_under_qemu_and_matches(edge_arm64, edge_x86, llmc_cache_dir, tmp_path):
    """Cross-build examples/cpp for aarch64, run the arm64 artifact under qemu-aarch64 with the
    aarch64 TVM runtime from the apache-tvm wheel, compare with the x86 Python runtime."""
    qemu = need_tool("qemu-aarch64")
    rt = llmc_cache_dir / "aarch64-tvm"
    subprocess.run([str(CPP / "fetch_aarch64_runtime.sh"), str(rt)], check=True,
                   capture_output=True, text=True)
    json_inc = tmp_path / "json-include"
    json_inc.mkdir()
    (json_inc / "nlohmann").symlink_to("/usr/include/nlohmann")
    exe = cmake_build(tmp_path / "cpp-arm64", [
        f"-DCMAKE_TOOLCHAIN_FILE={CPP / 'aarch64-linux-gnu.cmake'}",
        f"-DTVM_RUNTIME_LIB_DIR={rt}", f"-DTVM_FFI_LIB_DIR={rt}",
        f"-DNLOHMANN_JSON_INCLUDE_DIR={json_inc}"])
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    save_file({"x": x}, tmp_path / "in.safetensors")
    cmd = [qemu, "-L", "/usr/aarch64-linux-gnu", str(exe)]
    proc = run_cpp(cmd + [str(edge_arm64), str(tmp_path / "in.safetensors"),
                          str(tmp_path / "out.safetensors")], env={"LD_LIBRARY_PATH": str(rt)})
    assert proc.returncode == 0, proc.stderr
    got = load_file(tmp_path / "out.safetensors")
    want = llmc.load(edge_x86).run(x)
    ref = run_reference(edge_graph(), {"x": x})
    for name in ("y", "z"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-4)
    # and the aarch64 reader refuses the x86 artifact, as the x86 loader refuses this one
    proc = run_cpp(cmd + [str(edge_x86)], env={"LD_LIBRARY_PATH": str(rt)})
    assert proc.returncode == 2 and "built for x86_64, this machine is aarch64" in proc.stderr
