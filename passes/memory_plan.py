"""Memory planning (an analysis): liveness of intermediates and a packed arena layout.

Every intermediate (a node result that is not a graph output) lives from the node that
makes it to its last reader. Two intermediates whose lifetimes do not overlap can share
bytes; a greedy best-fit assignment (largest first, each into the tightest gap among the
buffers live at the same time) gives the offsets and the arena size that a runtime needs,
against the sum of all sizes that one-buffer-per-value would take.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from llmc import dims as D
from llmc.dtypes import to_numpy
from llmc.ir import Graph

ALIGN = 64


@dataclass
class MemoryPlan:
    """Arena layout of one graph at concrete symbol values."""

    arena_bytes: int
    total_bytes: int
    offsets: dict[str, int]
    sizes: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, tuple[int, int]] = field(default_factory=dict)
    bindings: dict[str, int] = field(default_factory=dict)

    @property
    def reuse_ratio(self) -> float:
        """total / arena: how many times over the arena is reused (1.0 = no reuse)."""
        return self.total_bytes / self.arena_bytes if self.arena_bytes else 1.0

    def to_dict(self) -> dict:
        """The summary the artifact manifest records."""
        return {"arena_bytes": self.arena_bytes, "total_intermediate_bytes": self.total_bytes,
                "buffers": len(self.offsets), "alignment": ALIGN,
                "bindings": dict(self.bindings)}


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def liveness(graph: Graph) -> dict[str, tuple[int, int]]:
    """Intermediate value -> (index of producing node, index of last reading node)."""
    outputs = set(graph.outputs)
    start: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for o in n.outputs:
            if o not in outputs:
                start[o] = i
    end = dict(start)
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v in end:
                end[v] = max(end[v], i)
    return {v: (start[v], end[v]) for v in start}


def plan_memory(graph: Graph, bindings: Mapping[str, int] | None = None) -> MemoryPlan:
    """Plan the intermediates of ``graph`` with symbols bound (unbound symbols = 1)."""
    bind = {s: 1 for s in graph.symbols()}
    bind.update(bindings or {})
    intervals = liveness(graph)
    sizes: dict[str, int] = {}
    numel_cache: dict[tuple, int] = {}
    for v in intervals:
        ty = graph.types[v]
        if ty.shape not in numel_cache:
            numel_cache[ty.shape] = D.evaluate(D.product(ty.shape), bind) if ty.shape else 1
        sizes[v] = int(numel_cache[ty.shape]) * to_numpy(ty.dtype).itemsize
    order = sorted(intervals, key=lambda v: (-sizes[v], intervals[v][0], v))
    live_at: dict[int, list[int]] = {}  # node index -> placed buffers live there
    placed: list[tuple[int, int]] = []  # (offset, size)
    offsets: dict[str, int] = {}
    for v in order:
        size = _align(max(sizes[v], 1))
        first, last = intervals[v]
        overlapping: set[int] = set()
        for t in range(first, last + 1):
            overlapping.update(live_at.get(t, ()))
        busy = sorted(placed[k] for k in overlapping)
        best, best_gap, cursor = None, None, 0
        for off, sz in busy:
            gap = off - cursor
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, off + sz)
        if best is None:
            best = cursor
        offsets[v] = best
        placed.append((best, size))
        for t in range(first, last + 1):
            live_at.setdefault(t, []).append(len(placed) - 1)
    arena = max((off + sz for off, sz in placed), default=0)
    total = sum(_align(max(s, 1)) for s in sizes.values())  # aligned like the arena
    return MemoryPlan(arena, total, offsets, sizes, intervals, bind)
