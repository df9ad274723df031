"""The `llmc tune` search space (backends/x86/tune.py): llmc's default packed schedule is a
point of it, and the per-tile epilogue dimension compiles and matches numpy."""
from __future__ import annotations

import numpy as np
import pytest
import tvm

from llmc.backends.x86 import host_target
from llmc.backends.x86.target import vector_lanes
from llmc.backends.x86.tune import (DEFAULT_CONFIG, PackedConfig, _compile_kernel, _packed_space,
                                    extract_tasks, model_module, packed_config_func, workload_mod)
from llmc.ir import Graph

K, N = 64, 128


def _kernel(m: int, epilogue: bool):
    """The packed kernel llmc builds for x[m, K] @ w (+ bias, relu when ``epilogue``), with the
    numpy reference of its output for the kernel's own inputs."""
    rng = np.random.default_rng(m)
    w = rng.standard_normal((K, N)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    g = Graph("mm")
    x = g.add_input("x", "float32", [m, K])
    (y,) = g.add_node("matmul", [x, g.add_constant(w, "w")])
    if epilogue:
        (y,) = g.add_node("add", [y, g.add_constant(b, "b")])
        (y,) = g.add_node("relu", [y])
    g.set_outputs([y])
    (task,), _ = extract_tasks(model_module(g))
    assert task.kind == ("fused_matmul_epilogue" if epilogue else "matmul_packed")
    return task


def _run(func, task) -> tuple[np.ndarray, np.ndarray]:
    """Run a scheduled kernel and llmc's unscheduled TIR of it (the reference semantics) on
    the same random inputs: (output, reference output)."""
    target = tvm.target.Target(host_target())
    rng = np.random.default_rng(7)
    params = task.func.params
    inputs = [rng.standard_normal([int(d) for d in p.shape]).astype(str(p.dtype))
              for p in params[:-1]]
    out_shape = ([int(d) for d in params[-1].shape], str(params[-1].dtype))
    outs = []
    for f in (func, task.func):
        args = [tvm.runtime.tensor(a) for a in inputs] + [tvm.runtime.tensor(np.zeros(*out_shape))]
        _compile_kernel(workload_mod(f), target)(*args)
        outs.append(args[-1].numpy())
    if task.kind == "matmul_packed":  # the reference itself against numpy: x @ unpacked w
        x, packed = inputs
        w = packed.transpose(1, 0, 2).reshape(packed.shape[1], -1)
        np.testing.assert_allclose(outs[1], x @ w, rtol=1e-4, atol=1e-4)
    return outs[0], outs[1]


def test_default_config_is_llmc_schedule():
    """DEFAULT_CONFIG names the sizes of backends/x86/schedule.py's packed tile."""
    from llmc.backends.x86 import schedule
    import inspect

    sig = inspect.signature(schedule._sched_matmul_packed).parameters
    assert (DEFAULT_CONFIG.rows, DEFAULT_CONFIG.kunroll) == (sig["mtile"].default, sig["kunroll"].default)
    assert DEFAULT_CONFIG.panels == 1 and not DEFAULT_CONFIG.row_outer
    assert not DEFAULT_CONFIG.epilogue_in_tile


@pytest.mark.parametrize("epilogue", [False, True])
def test_default_reachable_by_replaying_the_space(epilogue):
    """The first design space, replayed with the default's tile sizes as its decisions,
    builds and computes the kernel: the search starts from (can return) the default."""
    task = _kernel(16, epilogue)
    lanes = vector_lanes(host_target())
    spaces = _packed_space(task.kind, lanes)(tvm.s_tir.Schedule(workload_mod(task.func)))
    assert len(spaces) == 4  # 2 loop orders x epilogue as a pass / per tile
    trace = spaces[0].trace
    tiles = [inst for inst in trace.insts if inst.kind.name == "SamplePerfectTile"]
    assert len(tiles) == 3  # panels, K unroll, rows
    sizes = [DEFAULT_CONFIG.panels, DEFAULT_CONFIG.kunroll, DEFAULT_CONFIG.rows]
    extents = [N // 32, K, 16]
    for inst, inner, ext in zip(tiles, sizes, extents):
        trace = trace.with_decision(inst, [ext // inner, inner], remove_postproc=True)
    sch = tvm.s_tir.Schedule(workload_mod(task.func))
    trace.apply_to_schedule(sch, remove_postproc=True)
    fixed = packed_config_func(task.func, DEFAULT_CONFIG, lanes)
    got, ref = _run(sch.mod["main"], task)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    got, _ = _run(fixed, task)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", [PackedConfig(epilogue_in_tile=True),
                                    PackedConfig(rows=4, panels=2, kunroll=2,
                                                 epilogue_in_tile=True),
                                    PackedConfig(rows=16, panels=4, row_outer=True,
                                                 epilogue_in_tile=True)])
@pytest.mark.parametrize("epilogue", [False, True])
def test_epilogue_in_tile_matches_reference(config, epilogue):
    task = _kernel(16, epilogue)
    func = packed_config_func(task.func, config, vector_lanes(host_target()))
    got, ref = _run(func, task)
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_epilogue_in_tile_needs_full_tiles():
    """M % 8 != 0: the output joins the tile and the tail kernel, so only the two
    separate-pass spaces exist (and they still compute the kernel)."""
    task = _kernel(20, True)
    lanes = vector_lanes(host_target())
    spaces = _packed_space(task.kind, lanes)(tvm.s_tir.Schedule(workload_mod(task.func)))
    assert len(spaces) == 2
    with pytest.raises(ValueError, match="matmul_tail"):
        packed_config_func(task.func, PackedConfig(rows=4, epilogue_in_tile=True), lanes)
    got, ref = _run(packed_config_func(task.func, PackedConfig(rows=4), lanes), task)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
