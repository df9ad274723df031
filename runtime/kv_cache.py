"""KV caches for :mod:`llmc.runtime.llm`: preallocated (contiguous) or paged (blocks + table).

Both hold, per layer and K/V, the rows the prefill and every decode step produced, and hand the
decode entry the filled prefix as ``[batch, kv_heads, past, head_dim]`` arrays (the compiled
graph is stateless and takes the past as plain inputs).

- :class:`ContiguousKVCache`: one ``[batch, kv_heads, max_context, head_dim]`` buffer per layer
  and K/V, allocated up front (memory = batch x max_context whatever the prompts).
- :class:`PagedKVCache`: a pool of blocks of ``block_size`` tokens per layer and K/V and a block
  table per row; a block is allocated when a row first writes into it, and the left padding of
  a shorter prompt in a batch gets no block (its rows read as zeros, which the mask hides). So a
  batch of prompts of different lengths holds only the blocks its real tokens use.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class ContiguousKVCache:
    """Preallocated ``[batch, kv_heads, max_context, head_dim]`` buffers (2 per layer)."""

    def __init__(self, n_buffers: int, batch: int, kv_heads: int, head_dim: int,
                 max_context: int, dtype) -> None:
        self.buffers = [np.zeros((batch, kv_heads, max_context, head_dim), dtype)
                        for _ in range(n_buffers)]

    def write_prompt(self, rows: Sequence[np.ndarray], starts: np.ndarray) -> None:
        """The prefill's rows ``[batch, kv, P, hd]`` (``starts``: first real token per row)."""
        P = rows[0].shape[2]
        for buf, row in zip(self.buffers, rows):
            buf[:, :, :P] = row

    def append(self, rows: Sequence[np.ndarray], pos: int) -> None:
        """One decode step's rows ``[batch, kv, 1, hd]`` at cache position ``pos``."""
        for buf, row in zip(self.buffers, rows):
            buf[:, :, pos:pos + 1] = row

    def past(self, n: int) -> list[np.ndarray]:
        """The first ``n`` positions of every buffer (views)."""
        return [buf[:, :, :n] for buf in self.buffers]

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers)


class PagedKVCache:
    """Block pools ``[blocks, kv_heads, block_size, head_dim]`` (2 per layer) + block tables.

    Block 0 of every pool is a shared all-zero block that unallocated table entries point at;
    the pools grow (doubling) as rows allocate blocks.
    """

    def __init__(self, n_buffers: int, batch: int, kv_heads: int, head_dim: int,
                 max_context: int, dtype, block_size: int = 16) -> None:
        if block_size < 1:
            raise ValueError("block_size must be >= 1")
        self.block_size = int(block_size)
        self.max_blocks = -(-max_context // self.block_size)
        self.table = np.zeros((batch, self.max_blocks), np.int64)   # 0: not allocated
        self.used = 1
        cap = 1 + batch   # grows on demand
        self.pools = [np.zeros((cap, kv_heads, self.block_size, head_dim), dtype)
                      for _ in range(n_buffers)]

    @property
    def blocks_allocated(self) -> int:
        """Blocks in use (the zero block not counted)."""
        return self.used - 1

    @property
    def nbytes(self) -> int:
        """Bytes of the blocks in use (the pools' spare capacity not counted)."""
        per_block = sum(p[0].nbytes for p in self.pools)
        return self.blocks_allocated * per_block

    def _block(self, row: int, index: int) -> int:
        """The pool block of ``row``'s ``index``-th block, allocated on first use."""
        b = int(self.table[row, index])
        if b:
            return b
        if self.used == self.pools[0].shape[0]:
            self.pools = [np.concatenate([p, np.zeros_like(p)]) for p in self.pools]
        b = self.used
        self.used += 1
        self.table[row, index] = b
        return b

    def write_prompt(self, rows: Sequence[np.ndarray], starts: np.ndarray) -> None:
        """The prefill's rows ``[batch, kv, P, hd]``; positions before ``starts[r]`` (left
        padding) are not stored."""
        P, N = rows[0].shape[2], self.block_size
        for r, start in enumerate(starts):
            for blk in range(int(start) // N, -(-P // N)):
                lo, hi = max(blk * N, int(start)), min((blk + 1) * N, P)
                b = self._block(r, blk)
                for pool, row in zip(self.pools, rows):
                    pool[b, :, lo - blk * N:hi - blk * N] = row[r, :, lo:hi]

    def append(self, rows: Sequence[np.ndarray], pos: int) -> None:
        """One decode step's rows ``[batch, kv, 1, hd]`` at cache position ``pos``."""
        blk, off = divmod(pos, self.block_size)
        for r in range(self.table.shape[0]):
            b = self._block(r, blk)
            for pool, row in zip(self.pools, rows):
                pool[b, :, off] = row[r, :, 0]

    def past(self, n: int) -> list[np.ndarray]:
        """Dense ``[batch, kv, n, hd]`` copies of the first ``n`` positions (gathered blocks)."""
        nb = -(-n // self.block_size)
        idx = self.table[:, :nb]
        out = []
        for pool in self.pools:
            g = pool[idx]                                   # [B, nb, kv, N, hd]
            B, _, kv, N, hd = g.shape
            out.append(g.transpose(0, 2, 1, 3, 4).reshape(B, kv, nb * N, hd)[:, :, :n])
        return out
