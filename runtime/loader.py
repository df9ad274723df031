"""Open an artifact: verify every member, check it fits this machine, build a CompiledModel."""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

import llmc
from llmc.errors import ArtifactError

from . import cpu
from .format import WEIGHTS, read_artifact
from .model import CompiledModel


def load(path: str | os.PathLike, device: str | None = None) -> CompiledModel:
    """Load a ``.llmc`` artifact from disk; raises ArtifactError on any damage or mismatch."""
    where = os.fspath(path)
    if os.path.isdir(where):
        raise ArtifactError(f"{where}: is a directory, not an llmc artifact")
    return _open(where, where, device)


def load_bytes(data: bytes, where: str = "<artifact bytes>", device: str | None = None) -> CompiledModel:
    """Load an artifact held in memory (``llmc.compile`` results use this)."""
    return _open(bytes(data), where, device)


def _open(src, where: str, device: str | None) -> CompiledModel:
    manifest, members = read_artifact(src, where)
    check_version(manifest, where)
    target = manifest.get("target")
    if not isinstance(target, dict):
        raise ArtifactError(f"{where}: manifest has no target")
    check_schema(manifest, where)
    check_target(target, where)
    lib_name = manifest.get("library")
    if not isinstance(lib_name, str) or lib_name not in members:
        raise ArtifactError(f"{where}: manifest names library {lib_name!r}, which is not a member")
    _register_runtime_hook(target, where)
    weights = _load_weights(members.get(WEIGHTS), where)
    return CompiledModel(manifest, members[lib_name], weights, where,
                         device or target.get("device", "cpu"))


DEVICES = ("cpu", "cuda")


def check_schema(manifest: Mapping, where: str) -> None:
    """The manifest fields the runtime reads have the types it expects.

    The sha256 list only proves the members match the manifest, not that the manifest is one
    llmc wrote: a hand-edited (re-hashed) manifest must be refused here, not crash later.
    """
    def bad(field: str, value) -> ArtifactError:
        return ArtifactError(f"{where}: manifest field {field} is malformed ({str(value)[:80]!r}); "
                             "the artifact was not written by llmc or was edited")

    target = manifest["target"]
    for key in ("arch", "name", "mcpu"):
        if target.get(key) is not None and not isinstance(target[key], str):
            raise bad(f"target.{key}", target[key])
    flags = target.get("required_cpu_flags", [])
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise bad("target.required_cpu_flags", flags)
    if target.get("device", "cpu") not in DEVICES:
        raise bad("target.device", target.get("device"))
    params = manifest.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise bad("params", params)
    for key in ("inputs", "outputs"):
        entries = manifest.get(key)
        if not isinstance(entries, list):
            raise bad(key, entries)
        for e in entries:
            if not (isinstance(e, dict) and isinstance(e.get("name"), str)
                    and isinstance(e.get("dtype"), str) and isinstance(e.get("shape"), list)
                    and all((isinstance(d, int) and not isinstance(d, bool) and d >= 0)
                            or isinstance(d, str) for d in e["shape"])):
                raise bad(key, e)


def check_target(target: Mapping, where: str) -> None:
    """Refuse artifacts built for another architecture or for CPU features this host lacks."""
    arch = target.get("arch")
    if arch and arch != cpu.host_arch():
        raise ArtifactError(f"{where}: built for {arch} ({target.get('name')}), this machine is "
                            f"{cpu.host_arch()}; recompile with --target for this machine")
    if target.get("device") == "cuda":
        check_gpu(target, where)
        return
    required = target.get("required_cpu_flags") or []
    have = cpu.host_flags()
    if have:
        missing = [f for f in required if f not in have]
        if missing:
            raise ArtifactError(f"{where}: built for CPU {target.get('mcpu')!r}, which needs "
                                f"{', '.join(missing)}; this CPU lacks them. Recompile with "
                                "--mcpu for this machine (or x86-64 for any x86-64 CPU)")


def check_gpu(target: Mapping, where: str) -> None:
    """A CUDA artifact needs GPU 0 with exactly the arch its fatbin holds SASS for."""
    want = target.get("gpu_arch")
    try:
        import tvm.runtime

        dev = tvm.runtime.cuda(0)
        have = "sm_" + str(dev.compute_version).replace(".", "") if dev.exist else None
    except Exception:  # no driver / libcuda, or a TVM runtime without CUDA
        have = None
    if have is None:
        raise ArtifactError(f"{where}: built for an NVIDIA GPU ({want}), but this machine has no "
                            "usable CUDA GPU (no device or no driver); run it on a GPU machine or "
                            "recompile with --target x86")
    if want and have != want:
        raise ArtifactError(f"{where}: built for GPU arch {want}, this GPU is {have}; recompile "
                            f"with --target cuda --arch {have}")


def check_version(manifest: Mapping, where: str) -> None:
    """Artifacts from another major llmc version are refused rather than misread."""
    version = manifest.get("llmc_version")
    if not isinstance(version, str) or version.split(".")[0] != llmc.__version__.split(".")[0]:
        raise ArtifactError(f"{where}: built by llmc {version!r}, incompatible with llmc "
                            f"{llmc.__version__}; recompile the model")


# Targets whose library calls back into Python (the simulated systolic array). The module name
# comes from the artifact, so only these known llmc modules are ever imported for it.
RUNTIME_HOOKS = ("llmc.backends.systolic.runtime_hook",)


def _register_runtime_hook(target: Mapping, where: str) -> None:
    hook = target.get("runtime_hook")
    if hook is None:
        return
    if hook not in RUNTIME_HOOKS:
        raise ArtifactError(f"{where}: unknown runtime hook {hook!r}; llmc only loads "
                            f"{', '.join(RUNTIME_HOOKS)}")
    import importlib

    importlib.import_module(hook).register()


def _load_weights(data: bytes | None, where: str) -> dict[str, np.ndarray]:
    if data is None:
        return {}
    from safetensors.numpy import load as st_load

    try:
        return dict(st_load(data))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ArtifactError(f"{where}: weights.safetensors cannot be parsed ({exc})") from None
