"""Session fixtures: the tiny LLMs of llm_helpers and their compiled artifacts (built once)."""
from __future__ import annotations

import pytest

from .llm_helpers import compile_to, save_with_tokenizer, tiny_gpt2, tiny_llama


@pytest.fixture(scope="session")
def llama_model():
    return tiny_llama()


@pytest.fixture(scope="session")
def gpt2_tiny():
    return tiny_gpt2()


@pytest.fixture(scope="session")
def llama_artifact(llama_model, tmp_path_factory):
    return compile_to(llama_model, tmp_path_factory.mktemp("llm") / "llama.llmc", max_context=160)


@pytest.fixture(scope="session")
def gpt2_artifact(gpt2_tiny, tmp_path_factory):
    """Compiled through the CLI from a saved checkpoint directory with a tokenizer.json."""
    from llmc.llm_cli import main_for_tests

    root = tmp_path_factory.mktemp("llm")
    save_with_tokenizer(gpt2_tiny, root / "gpt2")
    out = root / "gpt2.llmc"
    assert main_for_tests(["compile-llm", str(root / "gpt2"), "-o", str(out), "--max-context",
                           "160", "-q"]) == 0
    return out


@pytest.fixture(scope="session")
def llama_llm(llama_artifact):
    from llmc.runtime.llm import load_llm

    return load_llm(llama_artifact)
