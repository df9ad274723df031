"""compile_pipeline: one artifact per stage plus a manifest; the stages run in one process
give the single artifact's outputs (and the PyTorch model's)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import llmc
from llmc.distributed import load_manifest, run_pipeline_local
from llmc.errors import ArtifactError, InputError

from conftest import gpt2_batches


def test_manifest_lists_stages_files_and_flowing_values(gpt2_pipeline):
    m = json.load(open(gpt2_pipeline))
    assert m["format"] == "llmc-pipeline" and len(m["stages"]) == 2
    assert [i["name"] for i in m["inputs"]] == ["x"]
    assert m["inputs"][0]["shape"] == ["batch", "seq", 256]
    s0, s1 = m["stages"]
    assert s0["inputs"] == [{"name": "x", "from": -1, "bytes": 2 * 16 * 256 * 4}]
    flowing = [i["name"] for i in s1["inputs"] if i["from"] == 0]
    assert flowing and set(flowing) <= {o["name"] for o in s0["outputs"]}
    assert m["cut_bytes"] == [sum(i["bytes"] for i in s1["inputs"])]
    assert m["outputs"][0]["from"] == 1
    for st in m["stages"]:
        art = llmc.load(os.path.join(os.path.dirname(gpt2_pipeline), st["artifact"]))
        assert sorted(s.name for s in art.inputs) == sorted(i["name"] for i in st["inputs"])
        assert [s.name for s in art.outputs] == [o["name"] for o in st["outputs"]]


def test_local_pipeline_equals_single_artifact(gpt2_pipeline, gpt2_artifact, gpt2_model):
    batches = gpt2_batches(3)
    single = llmc.load(gpt2_artifact)
    for got, batch in zip(run_pipeline_local(gpt2_pipeline, batches), batches):
        want = single.run(batch)["output_0"]
        np.testing.assert_allclose(got["output_0"], want, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            ref = gpt2_model(torch.from_numpy(batch["x"])).numpy()
        np.testing.assert_allclose(got["output_0"], ref, rtol=1e-4, atol=1e-4)


def test_bad_manifest_and_inputs(gpt2_pipeline, tmp_path):
    bad = tmp_path / "pipeline.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="not an llmc pipeline"):
        load_manifest(bad)
    m = json.load(open(gpt2_pipeline))
    m["stages"][1]["artifact"] = "missing.llmc"
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="missing"):
        load_manifest(moved)
    with pytest.raises(InputError, match="missing inputs"):
        run_pipeline_local(gpt2_pipeline, [{"y": np.zeros((2, 8, 256), np.float32)}])


def test_describe_pipeline_reports_transfer_sizes(gpt2_pipeline):
    from llmc.distributed import describe_pipeline

    m = json.load(open(gpt2_pipeline))
    text = describe_pipeline(gpt2_pipeline)
    assert "2 stages" in text and "stage0.llmc" in text and "stage1.llmc" in text
    for i in m["stages"][1]["inputs"]:
        assert f"{i['name']} (stage 0, {i['bytes'] / 1024:.0f} KiB)" in text
