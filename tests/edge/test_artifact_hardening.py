"""Regressions from fuzzing the loader: a re-hashed (hand-edited) manifest is an ArtifactError
at load or run time, never a TypeError or a TVM error; and loading unpickles nothing."""
from __future__ import annotations

import io
import json
import sys
import zipfile

import numpy as np
import pytest

import llmc
from llmc.errors import ArtifactError
from llmc.runtime.format import sha256


def _edited(path, edit) -> bytes:
    """The artifact with its manifest edited and the member hashes recomputed (a forgery)."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    edit(manifest, members)
    manifest["members"] = {n: sha256(d) for n, d in members.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, d in members.items():
            zf.writestr(n, d)
    return buf.getvalue()


@pytest.mark.parametrize("edit, message", [
    (lambda m, _: m.update(library={"a": 1}), "names library"),            # was TypeError
    (lambda m, _: m["target"].update(required_cpu_flags=[True]), "required_cpu_flags"),
    (lambda m, _: m["target"].update(device="\U0009a546"), "target.device"),  # was ValueError
    (lambda m, _: m["target"].update(device="ext_dev"), "target.device"),     # was InternalError
    (lambda m, _: m["target"].update(arch=["x86_64"]), "target.arch"),
    (lambda m, _: m.update(inputs=1.5), "field inputs"),                      # was TypeError
    (lambda m, _: m["outputs"][0].update(shape=[-3]), "field outputs"),
    (lambda m, _: m.update(params=[{"w": 1}]), "field params"),               # was TypeError
])
def test_malformed_manifest_fields_refused_at_load(edge_x86, edit, message):
    with pytest.raises(ArtifactError, match=message):
        llmc.runtime.load_bytes(_edited(edge_x86, edit))


@pytest.mark.parametrize("edit", [
    lambda m, _: m["inputs"][0].update(shape=["batch", 3]),        # was RuntimeError (match_cast)
    lambda m, _: m.update(params=m["params"][:-1]),                 # was InternalError (arity)
])
def test_manifest_disagreeing_with_library_refused_at_run(edge_x86, edit):
    model = llmc.runtime.load_bytes(_edited(edge_x86, edit))
    shape = [d if isinstance(d, int) else 2 for d in model.inputs[0].shape]
    with pytest.raises(ArtifactError, match="library refused the call"):
        model.run(np.zeros(shape, np.float32))


_WATCH = {"pickle.find_class", "exec", "compile", "marshal.loads", "marshal.load"}
_EVENTS: list[str] | None = None


def _audit(event: str, _args) -> None:
    if _EVENTS is not None and event in _WATCH:
        _EVENTS.append(event)


sys.addaudithook(_audit)  # hooks cannot be removed; it records only inside the test below


def test_loading_unpickles_and_executes_nothing(edge_x86):
    """Loading and running an artifact unpickles nothing and executes no Python code from it
    (CPython's audit events for unpickling globals, exec, compile, marshal), even when it
    carries a (listed, hashed) pickle member."""
    global _EVENTS
    import pickle

    bad = _edited(edge_x86, lambda m, members: members.update({"evil.pkl": pickle.dumps(print)}))
    llmc.runtime.load_bytes(bad).run(np.ones((1, 16), np.float32))  # warm: lazy imports done
    _EVENTS = []
    try:
        for data in (edge_x86.read_bytes(), bad):
            llmc.runtime.load_bytes(data).run(np.ones((2, 16), np.float32))
        seen = list(_EVENTS)
    finally:
        _EVENTS = None
    assert seen == []
    # and the hook does see unpickling when it happens (the test can fail)
    _EVENTS = []
    try:
        pickle.loads(pickle.dumps(print))
        assert "pickle.find_class" in _EVENTS
    finally:
        _EVENTS = None


def test_zip_level_forgeries_refused(edge_x86):
    """Found by atheris: a newer zip 'version needed' escaped as NotImplementedError. Also a
    compressed member (a zip bomb would be unbounded memory) and a duplicated member name."""
    data = bytearray(edge_x86.read_bytes())
    cd = data.index(b"PK\x01\x02")
    data[cd + 6:cd + 8] = (217).to_bytes(2, "little")  # version needed to extract: 21.7
    with pytest.raises(ArtifactError, match="not a readable zip"):
        llmc.runtime.load_bytes(bytes(data))
    with zipfile.ZipFile(edge_x86) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d, compress_type=zipfile.ZIP_DEFLATED if n.startswith("weights")
                        else zipfile.ZIP_STORED)
    with pytest.raises(ArtifactError, match="is compressed"):
        llmc.runtime.load_bytes(buf.getvalue())
    buf = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buf, "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
        zf.writestr("weights.safetensors", members["weights.safetensors"])
    with pytest.raises(ArtifactError, match="appears twice"):
        llmc.runtime.load_bytes(buf.getvalue())
