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
    check_target(target, where)
    lib_name = manifest.get("library")
    if lib_name not in members:
        raise ArtifactError(f"{where}: manifest names library {lib_name!r}, which is not a member")
    weights = _load_weights(members.get(WEIGHTS), where)
    return CompiledModel(manifest, members[lib_name], weights, where,
                         device or target.get("device", "cpu"))


def check_target(target: Mapping, where: str) -> None:
    """Refuse artifacts built for another architecture or for CPU features this host lacks."""
    arch = target.get("arch")
    if arch and arch != cpu.host_arch():
        raise ArtifactError(f"{where}: built for {arch} ({target.get('name')}), this machine is "
                            f"{cpu.host_arch()}; recompile with --target for this machine")
    required = target.get("required_cpu_flags") or []
    have = cpu.host_flags()
    if have:
        missing = [f for f in required if f not in have]
        if missing:
            raise ArtifactError(f"{where}: built for CPU {target.get('mcpu')!r}, which needs "
                                f"{', '.join(missing)}; this CPU lacks them. Recompile with "
                                "--mcpu for this machine (or x86-64 for any x86-64 CPU)")


def check_version(manifest: Mapping, where: str) -> None:
    """Artifacts from another major llmc version are refused rather than misread."""
    version = manifest.get("llmc_version")
    if not isinstance(version, str) or version.split(".")[0] != llmc.__version__.split(".")[0]:
        raise ArtifactError(f"{where}: built by llmc {version!r}, incompatible with llmc "
                            f"{llmc.__version__}; recompile the model")


def _load_weights(data: bytes | None, where: str) -> dict[str, np.ndarray]:
    if data is None:
        return {}
    from safetensors.numpy import load as st_load

    try:
        return dict(st_load(data))
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise ArtifactError(f"{where}: weights.safetensors cannot be parsed ({exc})") from None
