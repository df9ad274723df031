"""Hugging Face decoder-only LLMs -> an :class:`LLMSpec` (normalized config + fp32 weights).

Why a dedicated importer instead of torch.export: a decoder's structure is fully described by
its config (norm kind, RoPE, head counts, MLP kind), so reading config.json and the weights
builds exactly the two graphs the runtime needs (prefill and one-token decode, with the KV cache
as explicit inputs/outputs and a symbolic sequence length), with no tracing traps (frozen batch
or sequence dims, mask-length guards, transformers' cache classes changing between versions)
and without torch at compile time for safetensors checkpoints. The graphs themselves are built
by :mod:`llmc.llm`.

Supported families:
- ``llama``: LLaMA, SmolLM2, Mistral (max context within its sliding window), Qwen2 (q/k/v biases): RMSNorm,
  rotary embeddings (default rope type), SwiGLU MLP, grouped-query attention, tied or separate
  LM head.
- ``gpt2``: GPT-2: LayerNorm, learned positions, fused c_attn (Conv1D [in, out] weights),
  gelu (tanh), tied LM head.

Sources (never a hub at run time): a directory with config.json + *.safetensors (sharded or
not; tokenizer.json is picked up if present), a ``.gguf`` file (converted once through
:mod:`llmc.frontends.hf_gguf` and cached), or an in-memory transformers model
(:func:`from_transformers`, used by tests).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from llmc.errors import FrontendError

LLAMA_TYPES = {"llama", "mistral", "qwen2", "smollm2", "smollm3"}
GPT2_TYPES = {"gpt2"}


@dataclass
class LLMSpec:
    """Everything needed to build the graphs: the architecture's numbers and its weights.

    Weight names are the transformers ``state_dict`` names with any ``transformer.``/``model.``
    wrapper kept as transformers writes them for ``*ForCausalLM`` models.
    """

    arch: str                    # "llama" | "gpt2"
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float = 10000.0
    max_position: int = 2048
    tie_word_embeddings: bool = True
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    tokenizer_json: bytes | None = None
    model_type: str = ""
    source: str = ""
    sliding_window: int | None = None   # Mistral: the compiled max context must not exceed it

    def config_dict(self) -> dict:
        """The JSON-able numbers (the artifact's manifest records them)."""
        keys = ["arch", "model_type", "vocab_size", "hidden_size", "num_layers", "num_heads",
                "num_kv_heads", "head_dim", "intermediate_size", "norm_eps", "rope_theta",
                "max_position", "tie_word_embeddings", "hidden_act", "bos_token_id",
                "eos_token_ids", "source", "sliding_window"]
        return {k: getattr(self, k) for k in keys}

    def w(self, name: str) -> np.ndarray:
        """A weight by name, as float32; FrontendError naming the checkpoint when absent."""
        try:
            return np.asarray(self.weights[name], dtype=np.float32)
        except KeyError:
            raise FrontendError(f"{self.source}: weight {name!r} is missing from the checkpoint "
                                f"({self.model_type})") from None

    def has(self, name: str) -> bool:
        return name in self.weights


def _as_list(v: Any) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])]


def spec_from_config(cfg: Mapping[str, Any], weights: Mapping[str, np.ndarray],
                     source: str, tokenizer_json: bytes | None = None) -> LLMSpec:
    """Normalize a transformers config dict (+ weights) into an :class:`LLMSpec`."""
    mt = str(cfg.get("model_type", ""))
    weights = _normalize_names(dict(weights), mt)
    eos = _as_list(cfg.get("eos_token_id"))
    if mt in LLAMA_TYPES:
        hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        theta = cfg.get("rope_theta")
        for key in ("rope_parameters", "rope_scaling"):   # transformers 5 / 4 spellings
            rope = cfg.get(key)
            if not isinstance(rope, dict):
                continue
            rtype = rope.get("rope_type", rope.get("type", "default"))
            if rtype not in (None, "default"):
                raise FrontendError(f"{source}: rope type {rtype!r} ({key}) is not supported "
                                    "(default RoPE only)")
            theta = theta or rope.get("rope_theta")
        window = None
        if cfg.get("sliding_window") and cfg.get("use_sliding_window", mt == "mistral"):
            window = int(cfg["sliding_window"])   # exact as full attention up to this context
        act = cfg.get("hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise FrontendError(f"{source}: MLP activation {act!r} is not supported (silu only)")
        tie = bool(cfg.get("tie_word_embeddings", False)) or "lm_head.weight" not in weights
        return LLMSpec(
            arch="llama", vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
            num_layers=int(cfg["num_hidden_layers"]), num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            intermediate_size=int(cfg["intermediate_size"]),
            norm_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope_theta=float(theta or 10000.0),
            max_position=int(cfg.get("max_position_embeddings", 2048)),
            tie_word_embeddings=tie, hidden_act="silu",
            bos_token_id=cfg.get("bos_token_id"), eos_token_ids=eos, weights=weights,
            tokenizer_json=tokenizer_json, model_type=mt, source=source, sliding_window=window)
    if mt in GPT2_TYPES:
        hidden, heads = int(cfg["n_embd"]), int(cfg["n_head"])
        act = cfg.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
            raise FrontendError(f"{source}: GPT-2 activation {act!r} is not supported")
        return LLMSpec(
            arch="gpt2", vocab_size=int(cfg["vocab_size"]), hidden_size=hidden,
            num_layers=int(cfg["n_layer"]), num_heads=heads, num_kv_heads=heads,
            head_dim=hidden // heads, intermediate_size=int(cfg.get("n_inner") or 4 * hidden),
            norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
            max_position=int(cfg.get("n_positions", 1024)), tie_word_embeddings=True,
            hidden_act="gelu_tanh" if act != "gelu" else "gelu",
            bos_token_id=cfg.get("bos_token_id"), eos_token_ids=eos, weights=weights,
            tokenizer_json=tokenizer_json, model_type=mt, source=source)
    raise FrontendError(f"{source}: model_type {mt!r} is not supported; llmc imports the LLaMA "
                        "family (llama, mistral, qwen2, smollm) and gpt2")


def _normalize_names(weights: dict[str, np.ndarray], model_type: str) -> dict[str, np.ndarray]:
    """GPT-2 checkpoints come with or without the ``transformer.`` prefix: add it."""
    if model_type in GPT2_TYPES:
        return {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v
                for k, v in weights.items()}
    return weights


def from_transformers(model: Any) -> LLMSpec:
    """An :class:`LLMSpec` from a loaded transformers ``*ForCausalLM`` (tests, notebooks)."""
    sd = {k: v.detach().to("cpu").float().numpy() for k, v in model.state_dict().items()}
    return spec_from_config(model.config.to_dict(), sd, source=type(model).__name__)


def _read_safetensors(directory: Path) -> dict[str, np.ndarray]:
    """Every tensor of every *.safetensors file in ``directory``, as float32 numpy arrays.

    safetensors' numpy reader cannot represent bfloat16; such files go through ml_dtypes
    (an llmc dependency) instead of torch.
    """
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FrontendError(f"{directory}: no *.safetensors weights (llmc reads safetensors or "
                            "GGUF, never pickled .bin files)")
    out: dict[str, np.ndarray] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="numpy") as fh:
                for k in fh.keys():
                    out[k] = fh.get_tensor(k).astype(np.float32, copy=False)
        except Exception as exc:  # safetensors' own error type (bf16 included)
            if "bf16" not in str(exc).lower() and "bfloat16" not in str(exc).lower():
                raise FrontendError(f"{f}: cannot read safetensors ({exc})") from None
            out.update(_read_bf16_file(f))
    return out


def _read_bf16_file(f: Path) -> dict[str, np.ndarray]:
    """Parse a safetensors file by hand (header JSON + raw bytes) for bfloat16 tensors."""
    import struct

    import ml_dtypes

    kinds = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
             "F64": np.float64, "I64": np.int64, "I32": np.int32}
    data = f.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, info in header.items():
        if k == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if info["dtype"] not in kinds:
            raise FrontendError(f"{f}: tensor {k!r} has unsupported dtype {info['dtype']}")
        arr = np.frombuffer(data[8 + n + a:8 + n + b], dtype=kinds[info["dtype"]])
        out[k] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def load_hf(source: str | os.PathLike) -> LLMSpec:
    """Import a local checkpoint: a directory (config.json + safetensors) or a ``.gguf`` file."""
    path = Path(source)
    if path.is_file() and path.suffix == ".gguf":
        from .hf_gguf import convert_gguf

        path = convert_gguf(path)
    if not path.is_dir():
        raise FrontendError(f"{source}: expected a model directory (config.json + safetensors) "
                            "or a .gguf file")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FrontendError(f"{path}: no config.json")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise FrontendError(f"{cfg_file}: not valid JSON ({exc})") from None
    weights = _read_safetensors(path)
    tok_file = path / "tokenizer.json"
    tok = tok_file.read_bytes() if tok_file.is_file() else None
    gen_file = path / "generation_config.json"
    if gen_file.is_file() and not cfg.get("eos_token_id"):
        try:
            cfg["eos_token_id"] = json.loads(gen_file.read_text()).get("eos_token_id")
        except json.JSONDecodeError:
            pass
    return spec_from_config(cfg, weights, source=str(source), tokenizer_json=tok)
