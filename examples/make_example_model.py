"""Regenerate examples/models/tiny_bert.onnx, the model the README's main job compiles.

A 2-layer BERT encoder (hidden 128, 4 heads, vocab 1000) with seeded random weights, exported
by torch.onnx with symbolic batch and sequence: the same export path and op mix (Shape/Gather/
Concat shape arithmetic, Gather embeddings, LayerNorm, Erf-GELU, Softmax attention) as real
BERT-family models, at a size that can live in the repository.
"""
from __future__ import annotations

import os
import sys

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models", "tiny_bert.onnx")


class Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        cfg = transformers.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=512,
                                      max_position_embeddings=256, attn_implementation="eager")
        self.bert = transformers.BertModel(cfg).eval()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def main(path: str = OUT) -> str:
    model = Encoder().eval()
    ids = torch.randint(0, 1000, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.int64)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(model, (ids, mask), path, input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                    "attention_mask": {0: "batch", 1: "seq"},
                                    "last_hidden_state": {0: "batch", 1: "seq"}})
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
