"""Edge-app fixtures: a small two-output model, and the C++ example built with CMake (once)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from llmc import dims
from llmc.ir import Graph

REPO = Path(__file__).resolve().parents[2]
CPP = REPO / "examples" / "cpp"


def edge_graph() -> Graph:
    """x[batch, 16] -> y = relu(x @ w1 + b1) @ w2, z = exp(y * 0.1): symbolic batch, two outputs."""
    rng = np.random.default_rng(1)
    g = Graph("edge_mlp")
    x = g.add_input("x", "float32", [dims.sym("batch"), 16])
    w1 = g.add_constant(rng.standard_normal((16, 32)).astype(np.float32), "w1")
    b1 = g.add_constant(rng.standard_normal((32,)).astype(np.float32), "b1")
    w2 = g.add_constant(rng.standard_normal((32, 8)).astype(np.float32) * 0.3, "w2")
    k = g.add_constant(np.array(0.1, np.float32), "k")
    (h,) = g.add_node("matmul", [x, w1])
    (h,) = g.add_node("add", [h, b1])
    (h,) = g.add_node("relu", [h])
    (y,) = g.add_node("matmul", [h, w2], outputs=["y"])
    (s,) = g.add_node("mul", [y, k])
    g.add_node("exp", [s], outputs=["z"])
    g.set_outputs(["y", "z"])
    return g


def tvm_site_packages() -> Path:
    import tvm

    return Path(tvm.__file__).resolve().parents[1]


def need_tool(name: str) -> str:
    """CI installs these (scripts/setup.sh); a missing one is a failure, not a skip."""
    path = shutil.which(name)
    assert path, f"{name} is not installed (apt-get install cmake g++-aarch64-linux-gnu qemu-user nlohmann-json3-dev)"
    return path


def cmake_build(build_dir: Path, extra: list[str]) -> Path:
    need_tool("cmake")
    for cmd in (["cmake", "-S", str(CPP), "-B", str(build_dir),
                 f"-DTVM_PY_ROOT={tvm_site_packages()}", *extra],
                ["cmake", "--build", str(build_dir), "-j2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    exe = build_dir / "llmc_run"
    assert exe.is_file()
    return exe


@pytest.fixture(scope="session")
def edge_x86(tmp_path_factory):
    import llmc

    path = tmp_path_factory.mktemp("edge") / "edge.llmc"
    llmc.compile(edge_graph(), target="x86").save(path)
    return path


@pytest.fixture(scope="session")
def llmc_run_host(tmp_path_factory) -> Path:
    """examples/cpp built for this machine against the apache-tvm wheel's runtime."""
    return cmake_build(tmp_path_factory.mktemp("cpp-build"), [])


def run_cpp(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, **kw.pop("env", {}))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, **kw)
