"""Shared pytest fixtures: the test models of tests/models.py, built once per session."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import models` from any test folder


@pytest.fixture(scope="session")
def llmc_cache_dir() -> Path:
    """Where slow artifacts (exported ONNX files) are kept across runs: $LLMC_TEST_CACHE or
    .llmc-cache/ in the repo (gitignored)."""
    import models

    path = Path(os.environ.get("LLMC_TEST_CACHE", models.DEFAULT_CACHE))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def resnet_model():
    import models

    return models.resnet_cnn()


@pytest.fixture(scope="session")
def gpt2_model():
    import models

    return models.gpt2_block()


@pytest.fixture(scope="session")
def minilm_model():
    """The real MiniLM (eager attention), loaded once."""
    import models

    return models.minilm("eager")


@pytest.fixture(scope="session")
def minilm_inputs():
    """(input_ids, attention_mask) for three sentences; one padded row."""
    import models

    return models.minilm_tokenize()


@pytest.fixture(scope="session")
def minilm_onnx_path(llmc_cache_dir) -> Path:
    """MiniLM exported to ONNX with dynamic batch and seq (cached)."""
    import models

    return models.minilm_onnx(llmc_cache_dir)


def pytest_configure(config) -> None:
    # torch.export's own pytree deprecation noise (torch 2.13), not llmc's
    config.addinivalue_line("filterwarnings", "ignore:.*LeafSpec.*:FutureWarning")
