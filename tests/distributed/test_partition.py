"""The partitioner: stages are valid sub-graphs whose chained reference run equals the whole
graph's, the chosen cuts are optimal under the cost model, and cuts avoid wide tensors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from llmc import dims as D
from llmc.interpreter import run_reference
from llmc.ir import Graph
from llmc.passes import run_passes
from llmc.passes.partition import (PartitionError, _live_sets, _nbytes, _plain_shape, _remat_table,
                                   partition_graph)

from conftest import gpt2_batches


def _optimized(graph: Graph) -> Graph:
    from llmc.distributed.pipeline import _pre_passes

    return run_passes(graph, passes=_pre_passes("O3"))[0]


def _run_chained(stages, inputs: dict) -> dict:
    env = dict(inputs)
    for st in stages:
        env.update(run_reference(st.graph, {i.name: env[i.name] for i in st.inputs}))
    return env


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_gpt2_stages_chain_to_whole_graph(gpt2_graph, k):
    g = _optimized(gpt2_graph)
    part = partition_graph(g, k, {"batch": 2, "seq": 16})
    assert len(part.stages) == k
    covered = []
    for st in part.stages:
        st.graph.verify()
        covered.extend(n.name for n in st.graph.nodes)
        for i in st.inputs:  # every input comes from the caller or an earlier stage's outputs
            assert i.source == -1 and i.name in g.inputs or \
                i.source < st.index and i.name in part.stages[i.source].outputs
        assert set(st.graph.constants) <= set(g.constants)
        used = {x for n in st.graph.nodes for x in n.inputs}
        assert set(st.graph.constants) <= used  # only the constants it reads
    assert covered == [n.name for n in g.nodes]
    for batch in gpt2_batches(2):
        want = run_reference(g, batch)
        got = _run_chained(part.stages, batch)
        np.testing.assert_allclose(got[g.outputs[0]], want[g.outputs[0]], rtol=1e-5, atol=1e-5)


def test_cuts_only_where_shapes_bind_symbols(gpt2_graph):
    """No cut carries a [batch*seq, C] value: the next stage could not recover batch, seq."""
    g = _optimized(gpt2_graph)
    assert any(not _plain_shape(g.types[n.outputs[0]]) for n in g.nodes)  # such values exist
    vbytes = {v: _nbytes(g.types[v], {"batch": 1, "seq": 1}) for v in g.types}
    live = _live_sets(g, _remat_table(g, vbytes))
    for k in (2, 3, 4):
        for st in partition_graph(g, k).stages[1:]:
            assert all(_plain_shape(g.types[v]) for v in live[st.node_range[0]])
            have = set().union(*(D.symbols(d) for i in st.inputs for d in g.types[i.name].shape))
            assert have >= {"batch", "seq"} or not st.graph.symbols()


def test_bottleneck_is_optimal_by_brute_force(gpt2_graph):
    """The DP's slowest stage equals the best over every allowed pair of cuts."""
    from llmc.passes.partition import DEFAULT_NET_BW, estimate_node_times

    g = _optimized(gpt2_graph)
    bindings = {"batch": 4, "seq": 64}
    times = np.array(estimate_node_times(g, bindings))
    nbytes = {v: _nbytes(g.types[v], bindings) for v in g.types}
    live = _live_sets(g, _remat_table(g, nbytes))
    n = len(g.nodes)
    ok = [p for p in range(1, n) if all(_plain_shape(g.types[v]) for v in live[p])]

    def stage_time(lo, hi):
        return times[lo:hi].sum() + (sum(nbytes[v] for v in live[lo]) / DEFAULT_NET_BW
                                     if lo else 0.0)

    best = min(max(stage_time(0, a), stage_time(a, b), stage_time(b, n))
               for a, b in itertools.combinations(ok, 2))
    part = partition_graph(g, 3, bindings, tolerance=0.0)
    got = max(st.est_seconds for st in part.stages)
    assert got == pytest.approx(best, rel=1e-9)


def _chain_with_bottleneck() -> Graph:
    """x[n, 64] -> (matmul to 1024 wide) -> (matmul back to 64) -> ... : cutting at a 64-wide
    value moves 16x fewer bytes than at a 1024-wide one."""
    rng = np.random.default_rng(0)
    g = Graph("chain")
    h = g.add_input("x", "float32", [D.sym("n"), 64])
    for i in range(4):
        w1 = g.add_constant(rng.standard_normal((64, 1024)).astype(np.float32), f"up{i}")
        w2 = g.add_constant(rng.standard_normal((1024, 64)).astype(np.float32), f"down{i}")
        (h,) = g.add_node("matmul", [h, w1])
        (h,) = g.add_node("relu", [h])
        (h,) = g.add_node("matmul", [h, w2])
    g.set_outputs([h])
    return g


def test_prefers_narrow_cuts():
    g = _chain_with_bottleneck()
    part = partition_graph(g, 2, {"n": 256})
    (cut,) = part.cut_bytes
    assert cut == 256 * 64 * 4
    assert part.stages[0].outputs and g.types[part.stages[0].outputs[0]].shape[-1] == 64
    x = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
    np.testing.assert_allclose(_run_chained(part.stages, {"x": x})[g.outputs[0]],
                               run_reference(g, {"x": x})[g.outputs[0]], rtol=1e-5)


def test_measured_times_move_the_cut():
    """Measured node times replace the estimate: all the time in the last node -> the only
    balanced 2-stage split puts that node alone in stage 1."""
    g = _chain_with_bottleneck()
    times = [0.001] * len(g.nodes)
    times[-1] = 10.0
    part = partition_graph(g, 2, {"n": 8}, node_times=times, tolerance=0.0)
    assert part.stages[1].node_range == (len(g.nodes) - 1, len(g.nodes))
    by_name = {n.name: t for n, t in zip(g.nodes, times)}
    assert partition_graph(g, 2, {"n": 8}, node_times=by_name,
                           tolerance=0.0).stages[1].node_range == part.stages[1].node_range


def test_too_many_stages_is_an_error():
    g = _chain_with_bottleneck()
    with pytest.raises(PartitionError, match="stages"):
        partition_graph(g, len(g.nodes) + 1)
    with pytest.raises(PartitionError):
        partition_graph(g, 0)


def test_graph_outputs_from_early_stages():
    """A value returned by the graph but made in stage 0 is a stage-0 output."""
    g = _chain_with_bottleneck()
    first = g.nodes[2].outputs[0]
    g.set_outputs([first] + g.outputs)
    part = partition_graph(g, 2, {"n": 16})
    assert first in part.stages[0].outputs
    x = np.ones((3, 64), np.float32)
    env = _run_chained(part.stages, {"x": x})
    want = run_reference(g, {"x": x})
    for o in g.outputs:
        np.testing.assert_allclose(env[o], want[o], rtol=1e-5)


def test_masks_are_recomputed_not_shipped():
    """A wide value made cheaply from a small graph input (a broadcast mask) is recomputed by
    the stage that reads it; the small input is shipped instead."""
    rng = np.random.default_rng(0)
    g = Graph("masked")
    x = g.add_input("x", "float32", [D.sym("n"), 256])
    m = g.add_input("m", "float32", [D.sym("n"), 1])
    zeros = g.add_constant(np.zeros((1, 256), np.float32), "zeros")
    (mask,) = g.add_node("add", [m, zeros], outputs=["mask"])  # [n, 256] from [n, 1]
    h = x
    for i in range(4):
        w = g.add_constant(rng.standard_normal((256, 256)).astype(np.float32) / 16, f"w{i}")
        (h,) = g.add_node("matmul", [h, w])
        (h,) = g.add_node("mul", [h, mask])
    g.set_outputs([h])
    part = partition_graph(g, 2, {"n": 64})
    s1 = part.stages[1]
    names = [i.name for i in s1.inputs]
    assert "mask" not in names and "m" in names
    assert any(n.outputs == ["mask"] for n in s1.graph.nodes)
    assert part.cut_bytes == [sum(s1.value_bytes[i] for i in names)]
    assert partition_graph(g, 2, {"n": 64}, recompute=False).cut_bytes[0] > part.cut_bytes[0]
    feed = {"x": rng.standard_normal((3, 256)).astype(np.float32),
            "m": rng.standard_normal((3, 1)).astype(np.float32)}
    np.testing.assert_allclose(_run_chained(part.stages, feed)[h], run_reference(g, feed)[h],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_minilm_partition_report(minilm_model, minilm_inputs):
    """MiniLM in 3 stages: FLOPs balanced within 10%, the hidden state crosses each cut."""
    import torch

    from llmc.frontend import import_model

    ids, mask = minilm_inputs
    b, s = torch.export.Dim("batch", min=2, max=64), torch.export.Dim("seq", min=2, max=512)
    g = _optimized(import_model(minilm_model, (ids, mask),
                                dynamic_shapes={"input_ids": {0: b, 1: s},
                                                "attention_mask": {0: b, 1: s}}))
    part = partition_graph(g, 3, {"batch": 8, "seq": 128})
    flops = [st.flops for st in part.stages]
    assert max(flops) <= 1.1 * min(flops)
    hidden = 8 * 128 * 384 * 4
    for st in part.stages[1:]:
        assert any(st.value_bytes[i.name] == hidden for i in st.inputs)
        # the [batch, 1, seq, seq] float mask is recomputed from the [batch, seq] input
        assert st.in_bytes <= hidden + 8 * 128 * 8
    got = _run_chained(part.stages, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    want = minilm_model(ids, mask).detach().numpy()
    np.testing.assert_allclose(got[g.outputs[0]], want, rtol=1e-4, atol=1e-4)
