"""Shared fixtures for the distributed tests: the GPT-2-style block as an llmc Graph, its
2-stage pipeline and its single artifact (compiled once per session)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models


def gpt2_dynamic_graph(model):
    """The block imported with symbolic batch and seq, as `llmc compile` would see it."""
    from llmc.frontend import import_model

    b = torch.export.Dim("batch", min=2, max=16)
    t = torch.export.Dim("seq", min=2, max=512)
    return import_model(model, (models.gpt2_input(2, 8),), dynamic_shapes=({0: b, 1: t},))


def gpt2_batches(n: int, batch: int = 2) -> list[dict[str, np.ndarray]]:
    """Micro-batches of different sequence lengths (the pipeline must keep symbols dynamic)."""
    return [{"x": models.gpt2_input(batch, 8 + 4 * i, seed=100 + i).numpy()} for i in range(n)]


@pytest.fixture(scope="session")
def gpt2_graph(gpt2_model):
    return gpt2_dynamic_graph(gpt2_model)


@pytest.fixture(scope="session")
def gpt2_pipeline(gpt2_graph, tmp_path_factory) -> str:
    """pipeline.json of the block compiled as two x86 stages."""
    from llmc.distributed import compile_pipeline

    out = tmp_path_factory.mktemp("gpt2_pipeline")
    return compile_pipeline(gpt2_graph, 2, out, bindings={"batch": 2, "seq": 16})


@pytest.fixture(scope="session")
def gpt2_artifact(gpt2_graph, tmp_path_factory) -> str:
    """The whole block as one artifact (the single-process reference)."""
    import llmc

    path = tmp_path_factory.mktemp("gpt2_single") / "gpt2.llmc"
    return llmc.compile(gpt2_graph, target="x86").save(path)
