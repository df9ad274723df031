"""The C++ example loads the artifact with libtvm_runtime alone and agrees with the Python runtime."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import llmc

from .conftest import run_cpp

pytestmark = pytest.mark.slow  # one CMake build (~30 s) shared by the module


def test_cpp_matches_python_runtime(llmc_run_host, edge_x86, tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 16)).astype(np.float32)  # batch = 3 (a symbolic dim)
    save_file({"x": x}, tmp_path / "in.safetensors")
    proc = run_cpp([str(llmc_run_host), str(edge_x86), str(tmp_path / "in.safetensors"),
                    str(tmp_path / "out.safetensors")])
    assert proc.returncode == 0, proc.stderr
    got = load_file(tmp_path / "out.safetensors")
    want = llmc.load(edge_x86).run(x)
    assert set(got) == {"y", "z"}
    for name in ("y", "z"):
        assert got[name].shape == want[name].shape == (3, 8)
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    assert proc.stdout.splitlines()[0].startswith("y float32 [3, 8] values")


def test_cpp_default_inputs_match(llmc_run_host, edge_x86):
    """Without an inputs file the example feeds a ramp (batch = 1) and prints the outputs."""
    proc = run_cpp([str(llmc_run_host), str(edge_x86)])
    assert proc.returncode == 0, proc.stderr
    x = (np.arange(16) % 16 / 8.0 - 1.0).astype(np.float32)[None]
    want = llmc.load(edge_x86).run(x)["y"]
    line = proc.stdout.splitlines()[0]
    printed = [float(v) for v in line.split("values")[1].split("...")[0].split()]
    np.testing.assert_allclose(printed, want.ravel()[:6], rtol=1e-4)


def _rewrite(src, dst, edit_member=None, edit_manifest=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if edit_member and name == edit_member[0]:
                data = edit_member[1](data)
            if edit_manifest and name == "manifest.json":
                m = json.loads(data)
                edit_manifest(m)
                data = json.dumps(m).encode()
            zout.writestr(name, data)


def _flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]


def test_cpp_refuses_damaged_artifacts(llmc_run_host, edge_x86, tmp_path):
    """The C++ reader makes the same checks as the Python loader: exit 2 with a clear message."""
    cases = {
        "weights": (dict(edit_member=("weights.safetensors", _flip)), "sha256"),
        "library": (dict(edit_member=("lib/model.so", _flip)), "sha256"),
        "format": (dict(edit_manifest=lambda m: m.update(format_version=2)), "format version 2"),
        "llmc": (dict(edit_manifest=lambda m: m.update(llmc_version="7.0.0")), "built by llmc"),
        "arch": (dict(edit_manifest=lambda m: m["target"].update(arch="riscv64")), "built for riscv64"),
    }
    for key, (kw, message) in cases.items():
        bad = tmp_path / f"{key}.llmc"
        _rewrite(edge_x86, bad, **kw)
        proc = run_cpp([str(llmc_run_host), str(bad)])
        assert proc.returncode == 2, (key, proc.returncode, proc.stderr)
        assert message in proc.stderr, (key, proc.stderr)
    junk = tmp_path / "junk.llmc"
    junk.write_bytes(edge_x86.read_bytes()[:1000])
    proc = run_cpp([str(llmc_run_host), str(junk)])
    assert proc.returncode == 2 and "llmc_run:" in proc.stderr


def test_cpp_rejects_wrong_input(llmc_run_host, edge_x86, tmp_path):
    save_file({"x": np.zeros((2, 5), np.float32)}, tmp_path / "bad.safetensors")
    proc = run_cpp([str(llmc_run_host), str(edge_x86), str(tmp_path / "bad.safetensors")])
    assert proc.returncode == 2 and "axis 1 must be 16" in proc.stderr
