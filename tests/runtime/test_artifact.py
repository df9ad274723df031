"""Artifact integrity: every kind of damage or mismatch is an ArtifactError, never a crash."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

import llmc
from llmc.errors import ArtifactError
from llmc.runtime.format import MANIFEST, read_artifact


def _rewrite(src, dst, *, drop=None, replace=None, add=None, manifest_edit=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name == drop:
                continue
            data = zin.read(name)
            if replace and name in replace:
                data = replace[name](data)
            if name == MANIFEST and manifest_edit:
                m = json.loads(data)
                manifest_edit(m)
                data = json.dumps(m).encode()
            zout.writestr(name, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)


def _flip_byte(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


def test_manifest_records_signature_and_hashes(mlp_artifact):
    _, _, path = mlp_artifact
    manifest, members = read_artifact(str(path), str(path))
    assert manifest["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 16]}]
    assert manifest["outputs"][0]["name"] == "y"
    assert set(manifest["members"]) == set(members) == {"lib/model.so", "weights.safetensors"}
    assert manifest["target"]["name"] == "x86" and manifest["llmc_version"] == llmc.__version__


@pytest.mark.parametrize("member", ["lib/model.so", "weights.safetensors"])
def test_modified_member_is_refused(mlp_artifact, tmp_path, member):
    _, _, path = mlp_artifact
    bad = tmp_path / "bad.llmc"
    _rewrite(path, bad, replace={member: _flip_byte})
    with pytest.raises(ArtifactError, match=f"{member}.*sha256"):
        llmc.load(bad)


def test_missing_extra_and_garbage(mlp_artifact, tmp_path):
    _, _, path = mlp_artifact
    cases = {
        "missing": dict(drop="weights.safetensors"),
        "extra": dict(add={"evil.py": b"print('hi')"}),
        "no manifest": dict(drop=MANIFEST),
    }
    messages = {"missing": "is missing", "extra": "unexpected members", "no manifest": "no manifest"}
    for key, kwargs in cases.items():
        bad = tmp_path / f"{key.replace(' ', '_')}.llmc"
        _rewrite(path, bad, **kwargs)
        with pytest.raises(ArtifactError, match=messages[key]):
            llmc.load(bad)
    junk = tmp_path / "junk.llmc"
    junk.write_bytes(b"\x00not a zip" * 100)
    with pytest.raises(ArtifactError, match="not a readable zip"):
        llmc.load(junk)
    truncated = tmp_path / "trunc.llmc"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError):
        llmc.load(truncated)
    with pytest.raises(ArtifactError, match="no such file"):
        llmc.load(tmp_path / "nope.llmc")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=99), "format version 99"),
    (lambda m: m.update(llmc_version="7.0.0"), "built by llmc '7.0.0'"),
    (lambda m: m["target"].update(arch="aarch64"), "built for aarch64"),
    (lambda m: m["target"].update(required_cpu_flags=["avx512_made_up"]), "lacks them"),
    (lambda m: m.update(format="something-else"), "not an llmc artifact"),
])
def test_version_and_target_mismatch(mlp_artifact, tmp_path, edit, message):
    _, _, path = mlp_artifact
    bad = tmp_path / "edited.llmc"
    _rewrite(path, bad, manifest_edit=edit)
    with pytest.raises(ArtifactError, match=message):
        llmc.load(bad)


def test_in_memory_bytes_roundtrip(mlp_artifact):
    _, art, _ = mlp_artifact
    manifest, members = read_artifact(io.BytesIO(art.to_bytes()), "mem")
    assert manifest["params"] == art.manifest["params"]
