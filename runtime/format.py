"""The artifact file format: one zip with a manifest, a compiled library and the weights.

Members:
- ``manifest.json``: llmc and format versions, target, the model's signature (input and output
  names, dtypes, shapes with symbolic dims as text), the order of weight parameters, the pass
  list, and the sha256 of every other member.
- ``lib/<name>``: the TVM-exported shared library (Relax VM executable + kernels).
- ``weights.safetensors``: every weight tensor, by parameter name.

This module is shared by the compiler (writing) and the runtime (reading); it imports only
the standard library so that reading needs nothing more than the runtime does.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any, Mapping

from llmc.errors import ArtifactError

FORMAT_NAME = "llmc-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
MAX_MANIFEST_BYTES = 16 << 20


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_artifact(path_or_file, manifest: Mapping[str, Any], members: Mapping[str, bytes]) -> None:
    """Write the zip: members plus a manifest that records each member's sha256."""
    manifest = dict(manifest)
    manifest["format"] = FORMAT_NAME
    manifest["format_version"] = FORMAT_VERSION
    manifest["members"] = {name: sha256(data) for name, data in members.items()}
    with zipfile.ZipFile(path_or_file, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        for name, data in members.items():
            zf.writestr(name, data)


def read_artifact(path_or_bytes, where: str) -> tuple[dict, dict[str, bytes]]:
    """Read and validate an artifact; return (manifest, members) or raise ArtifactError.

    Every check that can fail on a damaged or tampered file is here: not a zip, missing or
    unparsable manifest, wrong format or version, missing, extra or altered members.
    """
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, (bytes, bytearray)) else path_or_bytes
    try:
        zf = zipfile.ZipFile(src)
    except FileNotFoundError:
        raise ArtifactError(f"{where}: no such file") from None
    except Exception as exc:  # BadZipFile, NotImplementedError (zip version), struct.error, ...
        raise ArtifactError(f"{where}: not an llmc artifact (not a readable zip file: {exc})") from None
    with zf:
        names = set(zf.namelist())
        if len(names) != len(zf.namelist()):
            raise ArtifactError(f"{where}: a member name appears twice (tampered artifact?)")
        for info in zf.infolist():  # stored members: memory is bounded by the file's size
            if info.compress_type != zipfile.ZIP_STORED:
                raise ArtifactError(f"{where}: member {info.filename!r} is compressed; llmc "
                                    "artifacts store members uncompressed (not written by llmc)")
        if MANIFEST not in names:
            raise ArtifactError(f"{where}: not an llmc artifact (no {MANIFEST})")
        manifest_bytes = _read_member(zf, MANIFEST, where)
        if len(manifest_bytes) > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"{where}: manifest is implausibly large ({len(manifest_bytes)} bytes)")
        try:
            manifest = json.loads(manifest_bytes)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{where}: manifest.json is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise ArtifactError(f"{where}: not an llmc artifact (manifest format is "
                                f"{manifest.get('format') if isinstance(manifest, dict) else manifest!r})")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(f"{where}: artifact format version {version!r}, this llmc reads "
                                f"version {FORMAT_VERSION}; recompile the model with this llmc")
        expected = manifest.get("members")
        if not isinstance(expected, dict) or not all(isinstance(v, str) for v in expected.values()):
            raise ArtifactError(f"{where}: manifest has no valid member list")
        extra = names - set(expected) - {MANIFEST}
        if extra:
            raise ArtifactError(f"{where}: unexpected members {sorted(extra)} (tampered artifact?)")
        members: dict[str, bytes] = {}
        for name, digest in expected.items():
            if name not in names:
                raise ArtifactError(f"{where}: member {name!r} is missing")
            data = _read_member(zf, name, where)
            if sha256(data) != digest:
                raise ArtifactError(f"{where}: member {name!r} does not match its sha256 in the "
                                    "manifest (the file was modified or damaged)")
            members[name] = data
    return manifest, members


def _read_member(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    try:
        return zf.read(name)
    except Exception as exc:  # BadZipFile, EOFError, NotImplementedError, zlib.error, ...
        raise ArtifactError(f"{where}: member {name!r} cannot be read ({exc})") from None
