"""KV caches for :mod:`llmc.runtime.llm`: preallocated (contiguous) or paged (blocks + table).

Both hold, per layer and K/V, the rows the prefill and every decode step produced, and hand the
decode entry its cache inputs ``[batch, kv_heads, >= past + 1, head_dim]`` (``step_inputs``);
the compiled step writes its new row at position ``past`` of those inputs.

- :class:`ContiguousKVCache`: one ``[batch, kv_heads, max_context, head_dim]`` tensor per layer
  and K/V, allocated up front (memory = batch x max_context whatever the prompts). The step
  gets these very tensors and writes into them: nothing is copied per step. On the CPU the
  tensors are TVM-allocated (aligned as TVM requires) and numpy views them through DLPack.
- :class:`PagedKVCache`: a pool of blocks of ``block_size`` tokens per layer and K/V and a block
  table per row; a block is allocated when a row first writes into it, and the left padding of
  a shorter prompt in a batch gets no block (its rows read as zeros, which the mask hides). So a
  batch of prompts of different lengths holds only the blocks its real tokens use. Each step
  gathers the blocks into dense inputs (a copy: the compiled kernels read dense caches) and
  stores the step's returned rows into the blocks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def buffer_specs(n_buffers: int, kv_heads: int, head_dim: int, length: int, dtype
                 ) -> list[tuple[tuple, np.dtype]]:
    """(shape after the batch/block axis, dtype) of every buffer, in the entry points' order:
    k_0, v_0, k_1, ... ; an int8 cache adds each layer's float32 row scales after its K and V
    (k_0, v_0, k_scale_0, v_scale_0, k_1, ...)."""
    dt = np.dtype(dtype)
    row = ((kv_heads, length, head_dim), dt)
    if dt != np.int8:
        return [row] * n_buffers
    scale = ((kv_heads, length, 1), np.dtype(np.float32))
    return [row, row, scale, scale] * (n_buffers // 2)


class ContiguousKVCache:
    """Preallocated ``[batch, kv_heads, max_context, head_dim]`` tensors (2 per layer)."""

    needs_rows = False   # the decode step writes its rows into these tensors itself

    def __init__(self, n_buffers: int, batch: int, kv_heads: int, head_dim: int,
                 max_context: int, dtype, device=None) -> None:
        import tvm.runtime

        self._tvm = tvm.runtime
        self._device = device if device is not None else tvm.runtime.cpu(0)
        specs = [((batch,) + shape, dt) for shape, dt in
                 buffer_specs(n_buffers, kv_heads, head_dim, max_context, dtype)]
        self._on_cpu = self._device.dlpack_device_type() == tvm.runtime.cpu(0).dlpack_device_type()
        if self._on_cpu:
            self.tensors = [tvm.runtime.empty(shape, str(dt), self._device)
                            for shape, dt in specs]
            self.buffers = [np.from_dlpack(t) for t in self.tensors]
            for b in self.buffers:
                b[...] = 0   # masked positions are multiplied by 0: they must not hold NaN
        else:   # a device cache: filled on the host, uploaded once before the first step
            self.buffers = [np.zeros(shape, dt) for shape, dt in specs]
            self.tensors = None

    def write_prompt(self, rows: Sequence[np.ndarray], starts: np.ndarray) -> None:
        """The prefill's rows ``[batch, kv, P, hd]`` (``starts``: first real token per row)."""
        P = rows[0].shape[2]
        for buf, row in zip(self.buffers, rows):
            buf[:, :, :P] = row
        if not self._on_cpu:
            self.tensors = None

    def step_inputs(self, past: int) -> list:
        """The decode step's cache inputs: the tensors themselves (written in place)."""
        if self.tensors is None:
            self.tensors = [self._tvm.tensor(b, self._device) for b in self.buffers]
        return self.tensors

    def append(self, rows: Sequence[np.ndarray], pos: int) -> None:
        """One decode step's rows ``[batch, kv, 1, hd]`` at cache position ``pos`` (for
        callers that ran the step on copies; :meth:`step_inputs` callers need not)."""
        for buf, row in zip(self.buffers, rows):
            buf[:, :, pos:pos + 1] = row
        if not self._on_cpu:
            self.tensors = None

    def past(self, n: int) -> list[np.ndarray]:
        """The first ``n`` positions of every buffer."""
        if not self._on_cpu and self.tensors is not None:
            return [t.numpy()[:, :, :n] for t in self.tensors]
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
        self.pools = [np.zeros((cap,) + shape, dt) for shape, dt in
                      buffer_specs(n_buffers, kv_heads, head_dim, self.block_size, dtype)]

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

    needs_rows = True   # the step runs on gathered copies: its rows are stored by append

    def step_inputs(self, past: int) -> list[np.ndarray]:
        """Dense ``[batch, kv, past + 1, hd]`` gathered copies (the step writes row ``past``)."""
        return self.past(past + 1)

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
