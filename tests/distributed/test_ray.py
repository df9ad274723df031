"""Pipeline and data-parallel runs on a local 2-CPU Ray cluster started here: results equal
the single-process outputs, and a worker killed mid-run is replaced with nothing lost or
duplicated. One cluster for the module, shut down at the end."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import ray  # the `test` extra installs it: a missing ray must fail, not skip

import llmc  # noqa: E402
from llmc.distributed import DataParallel, PipelineRunner, run_pipeline_local  # noqa: E402

from conftest import gpt2_batches  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    assert not ray.is_initialized()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    assert not ray.is_initialized()


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)


def test_pipeline_on_ray_equals_single_process(cluster, gpt2_pipeline, gpt2_artifact):
    batches = gpt2_batches(6)
    single = llmc.load(gpt2_artifact)
    local = run_pipeline_local(gpt2_pipeline, batches)
    with PipelineRunner(gpt2_pipeline, max_in_flight=3) as runner:
        assert len(runner.actors) == 2
        got = runner.run(iter(batches))
    assert ray.is_initialized()  # the runner joined the test's cluster, so it left it running
    assert len(got) == len(batches)
    for g, loc, batch in zip(got, local, batches):
        assert g["output_0"].shape == batch["x"].shape  # order kept: seq differs per batch
        np.testing.assert_array_equal(g["output_0"], loc["output_0"])
        _close(g, single.run(batch))


def _items(n: int) -> list[dict[str, np.ndarray]]:
    return gpt2_batches(n, batch=2)


def test_data_parallel_equals_single_process(cluster, gpt2_artifact, tmp_path):
    single = llmc.load(gpt2_artifact)
    items = _items(8)
    shards = []
    for i, item in enumerate(items[:3]):  # npz shards are opened by the workers themselves
        shards.append(str(tmp_path / f"shard{i}.npz"))
        np.savez(shards[-1], **item)
    with DataParallel(gpt2_artifact, workers=2) as dp:
        got = dp.map(items)
        from_shards = dp.map(shards)
        assert dp.stats["replaced"] == 0 and dp.stats["retried"] == 0
    assert len(got) == len(items)
    for g, item in zip(got, items):
        _close(g, single.run(item))
    for g, item in zip(from_shards, items):
        _close(g, single.run(item))


@pytest.mark.parametrize("how", ["ray.kill", pytest.param("SIGKILL", marks=pytest.mark.slow)])
def test_killed_worker_is_replaced_and_items_retried(cluster, gpt2_artifact, how):
    single = llmc.load(gpt2_artifact)
    items = _items(12)
    seen: list[int] = []
    with DataParallel(gpt2_artifact, workers=2, depth=3) as dp:
        victim_pid = dp.pids()[0]

        def kill_once(index: int, out: dict) -> None:
            seen.append(index)
            if len(seen) == 1:  # mid-run: the other items are queued on both workers
                if how == "ray.kill":
                    ray.kill(dp.actors[0])
                else:
                    os.kill(victim_pid, signal.SIGKILL)

        got = dp.map(items, on_result=kill_once)
        assert dp.stats["replaced"] >= 1 and dp.stats["retried"] >= 1
        assert victim_pid not in dp.pids()  # a fresh process took the dead one's place
    assert sorted(seen) == list(range(len(items)))  # each item delivered exactly once
    assert len(got) == len(items)
    for g, item in zip(got, items):
        _close(g, single.run(item))


def test_run_distributed_dispatches_on_the_path(cluster, gpt2_pipeline, gpt2_artifact):
    from llmc.distributed import run_distributed

    items = _items(2)
    single = llmc.load(gpt2_artifact)
    got = run_distributed(gpt2_pipeline, items)  # a .json runs as a pipeline
    for g, item in zip(got, items):
        _close(g, single.run(item))
    assert ray.is_initialized()  # joined the running cluster: left it alone


@pytest.mark.slow
def test_another_process_joins_by_address(cluster, gpt2_artifact, tmp_path):
    """What `--ray-address` does: a second driver joins this cluster instead of starting
    one, and its actors run there."""
    import subprocess
    import sys

    address = ray.get_runtime_context().gcs_address
    item = _items(1)[0]
    np.savez(tmp_path / "in.npz", **item)
    script = (
        "import sys, numpy as np, ray\n"
        "from llmc.distributed import DataParallel\n"
        "dp = DataParallel(sys.argv[1], workers=1, ray_address=sys.argv[2])\n"
        "assert ray.get_runtime_context().gcs_address == sys.argv[2]\n"
        "nodes = ray.nodes()\n"
        "out = dp.map([sys.argv[3]])[0]\n"
        "dp.close()\n"
        "np.savez(sys.argv[4], n_nodes=len(nodes), **out)\n")
    subprocess.run([sys.executable, "-c", script, gpt2_artifact, address,
                    str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, timeout=120)
    assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2  # still up
    with np.load(tmp_path / "out.npz") as out:
        assert int(out["n_nodes"]) == len(ray.nodes())
        np.testing.assert_allclose(out["output_0"], llmc.load(gpt2_artifact).run(item)["output_0"],
                                   rtol=1e-5, atol=1e-5)
