"""Split a graph into K pipeline stages: balanced estimated cost, small tensors across cuts.

Why: a model that does not fit (or run fast enough) on one machine runs as a pipeline of
stages, one per machine. A stage is a contiguous range of the graph's nodes in topological
order, made into a self-contained sub-Graph: its inputs are the values that cross into it,
its outputs the values later stages (or the caller) need, its constants only those it reads.

Cost model (all evaluated at concrete symbol ``bindings``):
  node time  = FLOPs / flop_rate + bytes touched / mem_bw   (or a measured time per node)
  stage time = sum of its node times + bytes crossing the cut before it / net_bw
  cut size   = bytes of the non-constant values live across the cut
Cut points are chosen by dynamic programming over the topological order: first the
smallest achievable bottleneck (the slowest stage bounds pipeline throughput), then, among
partitions whose every stage is within ``tolerance`` of that bottleneck, the one moving the
fewest bytes across cuts. A cut is allowed only where every value crossing it has a shape of
ints and bare symbols (``[batch, seq, 256]``, not ``[batch*seq, 256]``), so the receiving
stage can bind its symbols from its input shapes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import sympy

from llmc import dims as D
from llmc.dtypes import to_numpy
from llmc.errors import LlmcError
from llmc.ir import Graph, Node, TensorType

__all__ = ["PartitionError", "StageInput", "Stage", "Partition", "node_flops", "node_bytes",
           "estimate_node_times", "partition_graph"]

# Defaults for the time model: a scheduled 2-core x86 (see DESIGN.md), local shared memory.
DEFAULT_FLOP_RATE = 50e9     # FLOP/s a compiled kernel reaches
DEFAULT_MEM_BW = 20e9        # bytes/s through DRAM
DEFAULT_NET_BW = 1.25e9      # bytes/s between stages (10 Gb/s network)

_FREE_OPS = {"reshape", "squeeze", "unsqueeze", "identity", "flatten"}  # views: no work


class PartitionError(LlmcError):
    """The graph cannot be split as asked (too few nodes or allowed cut points)."""


@dataclass
class StageInput:
    """A value a stage reads: ``source`` is -1 for a graph input, else the producing stage."""

    name: str
    source: int


@dataclass
class Stage:
    """One pipeline stage: a self-contained sub-Graph plus what the cost model says about it."""

    index: int
    graph: Graph
    inputs: list[StageInput]
    outputs: list[str]
    node_range: tuple[int, int]
    est_seconds: float
    flops: int
    in_bytes: int
    out_bytes: int
    value_bytes: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        """A JSON-ready description (the pipeline manifest embeds it)."""
        return {"index": self.index, "nodes": self.node_range[1] - self.node_range[0],
                "node_range": list(self.node_range), "est_seconds": self.est_seconds,
                "flops": self.flops, "in_bytes": self.in_bytes, "out_bytes": self.out_bytes,
                "inputs": [{"name": i.name, "from": i.source, "bytes": self.value_bytes[i.name]}
                           for i in self.inputs],
                "outputs": [{"name": o, "bytes": self.value_bytes[o]} for o in self.outputs],
                "constant_bytes": self.graph.constant_bytes()}


@dataclass
class Partition:
    """The stages, in order, and the bindings the costs were evaluated at."""

    graph_name: str
    stages: list[Stage]
    bindings: dict[str, int]
    cut_bytes: list[int]          # bytes crossing each chosen cut (len = K-1)

    def table(self) -> str:
        """A readable per-stage report: nodes, FLOPs, estimated time, bytes in and out."""
        rows = [f"{'stage':>5} {'nodes':>6} {'GFLOP':>9} {'est ms':>9} {'in KiB':>10} "
                f"{'out KiB':>10} {'const MiB':>10}"]
        for s in self.stages:
            rows.append(f"{s.index:>5} {s.node_range[1] - s.node_range[0]:>6} "
                        f"{s.flops / 1e9:>9.4f} {s.est_seconds * 1e3:>9.3f} "
                        f"{s.in_bytes / 1024:>10.1f} {s.out_bytes / 1024:>10.1f} "
                        f"{s.graph.constant_bytes() / 2**20:>10.2f}")
        return "\n".join(rows)


# --------------------------------------------------------------------------- cost model
def _bindings_for(graph: Graph, bindings: Mapping[str, int] | None) -> dict[str, int]:
    out = {s: 1 for s in graph.symbols()}
    out.update(bindings or {})
    return out


def _numel(ty: TensorType, bindings: Mapping[str, int]) -> int:
    return int(np.prod([D.evaluate(d, bindings) for d in ty.shape], dtype=np.int64)) \
        if ty.shape else 1


def _nbytes(ty: TensorType, bindings: Mapping[str, int]) -> int:
    return _numel(ty, bindings) * to_numpy(ty.dtype).itemsize


def node_flops(graph: Graph, node: Node, bindings: Mapping[str, int]) -> int:
    """Estimated floating-point operations of one node (multiply-add = 2)."""
    ins = [graph.types[i] if i else None for i in node.inputs]
    out_elems = sum(_numel(graph.types[o], bindings) for o in node.outputs)
    op = node.op
    if op in _FREE_OPS:
        return 0
    if op == "matmul":
        a = ins[0]
        k = D.evaluate(a.shape[-1], bindings) if a.rank else 1
        return 2 * out_elems * k
    if op in ("conv", "conv_transpose"):
        w = ins[1]
        per_out = _numel(w, bindings) // max(1, D.evaluate(w.shape[0], bindings))
        base = _numel(ins[0], bindings) if op == "conv_transpose" else out_elems
        return 2 * base * per_out
    if op == "attention":
        q, k = ins[0], ins[1]
        lq, e = D.evaluate(q.shape[-2], bindings), D.evaluate(q.shape[-1], bindings)
        lk = D.evaluate(k.shape[-2], bindings)
        ev = D.evaluate(graph.types[node.outputs[0]].shape[-1], bindings)
        rows = out_elems // max(1, ev)          # batch * heads * Lq
        return 2 * rows * lk * (e + ev) + 5 * rows * lk
    if op == "fused":
        sub = node.attrs.get("body")
        if isinstance(sub, Graph):
            return sum(node_flops(sub, n, bindings) for n in sub.nodes)
    if op.startswith("reduce_") or op in ("softmax", "log_softmax", "layer_norm", "rms_norm",
                                          "batch_norm", "instance_norm"):
        return 5 * max(out_elems, _numel(ins[0], bindings))
    return out_elems


def node_bytes(graph: Graph, node: Node, bindings: Mapping[str, int]) -> int:
    """Bytes a node reads and writes (weights included): the memory-bound part of its time."""
    if node.op in _FREE_OPS:
        return 0
    total = sum(_nbytes(graph.types[i], bindings) for i in node.inputs if i)
    return total + sum(_nbytes(graph.types[o], bindings) for o in node.outputs)


def estimate_node_times(graph: Graph, bindings: Mapping[str, int] | None = None,
                        flop_rate: float = DEFAULT_FLOP_RATE,
                        mem_bw: float = DEFAULT_MEM_BW) -> list[float]:
    """Seconds per node (roofline-ish: compute time plus memory time), in node order."""
    b = _bindings_for(graph, bindings)
    return [node_flops(graph, n, b) / flop_rate + node_bytes(graph, n, b) / mem_bw
            for n in graph.nodes]


# --------------------------------------------------------------------------- liveness
def _attr_symbols(value: Any) -> set[str]:
    if isinstance(value, sympy.Expr):
        return D.symbols(value)
    if isinstance(value, (list, tuple)):
        out: set[str] = set()
        for v in value:
            out |= _attr_symbols(v)
        return out
    if isinstance(value, dict):
        return _attr_symbols(list(value.values()))
    return set()


def _bare_symbols(ty: TensorType) -> set[str]:
    return {str(d) for d in ty.shape if isinstance(d, sympy.Symbol)}


def _plain_shape(ty: TensorType) -> bool:
    return all(isinstance(d, (int, sympy.Symbol)) for d in ty.shape)


_HEAVY_OPS = {"matmul", "conv", "conv_transpose", "attention", "fused"}
_REMAT_MAX_NODES = 32


@dataclass
class _Remat:
    """A value cheap to recompute from graph inputs and constants: its leaves (graph inputs)
    and the nodes that make it, in order."""

    leaves: list[str]
    nodes: list[int]


def _remat_table(graph: Graph, vbytes: Mapping[str, int]) -> dict[str, _Remat]:
    """Values a later stage should recompute rather than receive: made without heavy ops
    from graph inputs and constants only, by at most _REMAT_MAX_NODES nodes, and bigger
    than the inputs they come from (attention masks broadcast to [batch, 1, seq, seq])."""
    cone: dict[str, _Remat | None] = {i: _Remat([i], []) for i in graph.inputs}
    for c in graph.constants:
        cone[c] = _Remat([], [])
    for idx, node in enumerate(graph.nodes):
        parts = [cone.get(i) for i in node.inputs if i]
        if node.op in _HEAVY_OPS or any(p is None for p in parts):
            for o in node.outputs:
                cone[o] = None
            continue
        leaves = sorted({x for p in parts for x in p.leaves})
        nodes = sorted({x for p in parts for x in p.nodes} | {idx})
        for o in node.outputs:
            cone[o] = _Remat(leaves, nodes) if len(nodes) <= _REMAT_MAX_NODES else None
    out = {}
    for v, r in cone.items():
        if r is None or not r.nodes or v in graph.outputs:
            continue
        if sum(vbytes[x] for x in r.leaves) < vbytes[v]:
            out[v] = r
    return out


def _live_sets(graph: Graph, remat: Mapping[str, _Remat] | None = None) -> list[list[str]]:
    """For each position p in 0..N: the non-constant values that must be shipped across a
    cut before node p: defined before p (graph inputs count as defined at 0) and read by
    node p or later, or returned by the graph. A value in ``remat`` is not shipped; the
    graph inputs it is recomputed from are, as long as it is still read."""
    remat = remat or {}
    n = len(graph.nodes)
    last_use: dict[str, int] = {}
    for idx, node in enumerate(graph.nodes):
        for i in node.inputs:
            if i:
                last_use[i] = idx
    for o in graph.outputs:
        last_use[o] = n
    for v, r in remat.items():
        for leaf in r.leaves:
            last_use[leaf] = max(last_use.get(leaf, 0), last_use.get(v, 0))
    def_at: dict[str, int] = {i: 0 for i in graph.inputs}
    for idx, node in enumerate(graph.nodes):
        for o in node.outputs:
            def_at[o] = idx + 1
    live: list[list[str]] = [[] for _ in range(n + 1)]
    for v, d in def_at.items():
        if v in graph.constants or v not in last_use or v in remat:
            continue
        for p in range(max(d, 1), min(last_use[v], n - 1) + 1):
            live[p].append(v)
    return live


# --------------------------------------------------------------------------- cut choice
def _choose_cuts(times: np.ndarray, cut_bytes: np.ndarray, feasible: np.ndarray, k: int,
                 net_bw: float, tolerance: float) -> list[int]:
    """Positions 0 = c0 < c1 < .. < ck = N: minimal bottleneck, then fewest bytes cut."""
    n = len(times)
    prefix = np.concatenate([[0.0], np.cumsum(times)])
    xfer = np.where(feasible, cut_bytes / net_bw, np.inf)
    xfer[0] = 0.0
    inf = np.inf
    # phase 1: best[j][b] = smallest bottleneck of j stages covering nodes [0, b)
    best = np.full((k + 1, n + 1), inf)
    best[0][0] = 0.0
    for j in range(1, k + 1):
        for b in range(j, n + 1):
            a = np.arange(j - 1, b)
            stage = prefix[b] - prefix[a] + xfer[a]
            best[j][b] = np.min(np.maximum(best[j - 1][a], stage))
    bottleneck = best[k][n]
    if not np.isfinite(bottleneck):
        raise PartitionError(f"cannot cut {n} nodes into {k} stages: too few allowed cut "
                             f"points ({int(feasible[1:n].sum())}); use fewer stages")
    cap = bottleneck * (1.0 + tolerance) + 1e-12
    # phase 2: fewest bytes across cuts with every stage within the cap
    cost = np.full((k + 1, n + 1), inf)
    back = np.zeros((k + 1, n + 1), dtype=np.int64)
    cost[0][0] = 0.0
    cb = np.where(feasible, cut_bytes.astype(float), inf)
    cb[0] = 0.0
    for j in range(1, k + 1):
        for b in range(j, n + 1):
            a = np.arange(j - 1, b)
            ok = (prefix[b] - prefix[a] + xfer[a]) <= cap
            cand = np.where(ok, cost[j - 1][a] + cb[a], inf)
            i = int(np.argmin(cand))
            cost[j][b], back[j][b] = cand[i], a[i]
    cuts = [n]
    for j in range(k, 0, -1):
        cuts.append(int(back[j][cuts[-1]]))
    return cuts[::-1]


# --------------------------------------------------------------------------- stages
def _build_stage_graph(graph: Graph, index: int, nodes: Sequence[Node], inputs: Sequence[str],
                       outputs: Sequence[str]) -> Graph:
    g = Graph(f"{graph.name}_stage{index}")
    for i in inputs:
        g.add_input(i, graph.types[i].dtype, graph.types[i].shape)
    for node in nodes:
        for i in node.inputs:
            if i in graph.constants and i not in g.constants:
                g.constants[i] = graph.constants[i]
                g.types[i] = graph.types[i]
                g._used.add(i)
        for o in node.outputs:
            g.types[o] = graph.types[o]
            g._used.add(o)
        g._used.add(node.name)
        g.nodes.append(Node(node.op, list(node.inputs), list(node.outputs), dict(node.attrs),
                            node.name))
    g.set_outputs(outputs)
    g.verify()
    return g


def partition_graph(graph: Graph, k: int, bindings: Mapping[str, int] | None = None, *,
                    node_times: Sequence[float] | Mapping[str, float] | None = None,
                    flop_rate: float = DEFAULT_FLOP_RATE, mem_bw: float = DEFAULT_MEM_BW,
                    net_bw: float = DEFAULT_NET_BW, tolerance: float = 0.1,
                    recompute: bool = True) -> Partition:
    """Split ``graph`` into ``k`` stages (see the module docstring for the model).

    ``bindings`` gives symbol values for costs and bytes (missing symbols count as 1).
    ``node_times`` replaces the estimate with measured seconds (a list in node order, or a
    dict by node name). ``tolerance`` is how much slower than the best bottleneck a stage may
    be to buy a smaller cut. ``recompute`` lets a stage recompute cheap values derived from
    graph inputs only (masks) instead of receiving them.
    """
    if k < 1:
        raise PartitionError(f"the number of stages must be at least 1, got {k}")
    n = len(graph.nodes)
    if n < k:
        raise PartitionError(f"graph {graph.name!r} has {n} nodes, cannot make {k} stages")
    b = _bindings_for(graph, bindings)
    if node_times is None:
        times = np.array(estimate_node_times(graph, b, flop_rate, mem_bw))
    elif isinstance(node_times, Mapping):
        times = np.array([float(node_times.get(nd.name, 0.0)) for nd in graph.nodes])
    else:
        times = np.asarray(node_times, dtype=float)
        if times.shape != (n,):
            raise PartitionError(f"node_times has {times.size} entries, graph has {n} nodes")
    vbytes = {v: _nbytes(graph.types[v], b) for v in graph.types if v not in graph.constants}
    remat = _remat_table(graph, vbytes) if recompute else {}
    live = _live_sets(graph, remat)
    cut_bytes = np.array([sum(vbytes[v] for v in live[p]) for p in range(n + 1)], dtype=float)
    feasible = np.array([p > 0 and p < n and all(_plain_shape(graph.types[v]) for v in live[p])
                         for p in range(n + 1)])
    feasible[0] = True
    cuts = _choose_cuts(times, cut_bytes, feasible, k, net_bw, tolerance)

    # which values each stage reads from outside, by first use
    ranges = [(cuts[i], cuts[i + 1]) for i in range(k)]
    owner: dict[str, int] = {i: -1 for i in graph.inputs}
    for s, (lo, hi) in enumerate(ranges):
        for node in graph.nodes[lo:hi]:
            for o in node.outputs:
                owner[o] = s
    stage_inputs: list[list[str]] = []
    stage_remat: list[list[int]] = []
    for s, (lo, hi) in enumerate(ranges):
        ins: list[str] = []
        extra: set[int] = set()
        here = {o for node in graph.nodes[lo:hi] for o in node.outputs}
        for node in graph.nodes[lo:hi]:
            for i in node.inputs:
                if not i or i in here or i in graph.constants:
                    continue
                if i in remat:
                    extra |= set(remat[i].nodes)
                    new = remat[i].leaves
                else:
                    new = [i]
                ins.extend(x for x in new if x not in ins)
        stage_remat.append(sorted(extra))
        # symbols this stage uses must be bindable from its input shapes: add a carrier
        used: set[str] = set()
        for node in [graph.nodes[x] for x in extra] + graph.nodes[lo:hi]:
            used |= _attr_symbols(list(node.attrs.values()))
            for v in list(node.inputs) + list(node.outputs):
                if v:
                    for d in graph.types[v].shape:
                        used |= D.symbols(d)
        have: set[str] = set()
        for i in ins:
            have |= _bare_symbols(graph.types[i])
        missing = used - have
        if missing:
            pool = [v for v in live[lo] if _plain_shape(graph.types[v])] + list(graph.inputs)
            for v in sorted(pool, key=lambda v: vbytes[v]):
                if _bare_symbols(graph.types[v]) & missing and v not in ins:
                    ins.append(v)
                    missing -= _bare_symbols(graph.types[v])
                if not missing:
                    break
        if missing:
            raise PartitionError(f"stage {s} of {graph.name!r} uses symbols "
                                 f"{sorted(missing)} that no value crossing into it carries")
        stage_inputs.append(ins)
    needed_later: list[set[str]] = [set(graph.outputs) for _ in range(k)]
    for s in range(k):
        for t in range(s + 1, k):
            needed_later[s] |= set(stage_inputs[t])

    stages: list[Stage] = []
    for s, (lo, hi) in enumerate(ranges):
        nodes = graph.nodes[lo:hi]
        outs = [o for node in nodes for o in node.outputs if o in needed_later[s]]
        sg = _build_stage_graph(graph, s, [graph.nodes[x] for x in stage_remat[s]] + nodes,
                                stage_inputs[s], outs)
        in_bytes = sum(vbytes[i] for i in stage_inputs[s])
        stages.append(Stage(
            index=s, graph=sg, inputs=[StageInput(i, owner[i]) for i in stage_inputs[s]],
            outputs=outs, node_range=(lo, hi),
            est_seconds=float(times[lo:hi].sum() + (cut_bytes[lo] / net_bw if s else 0.0)),
            flops=int(sum(node_flops(graph, nd, b) for nd in nodes)), in_bytes=in_bytes,
            out_bytes=sum(vbytes[o] for o in outs),
            value_bytes={v: vbytes[v] for v in list(stage_inputs[s]) + outs}))
    return Partition(graph.name, stages, dict(b), [int(cut_bytes[c]) for c in cuts[1:-1]])
