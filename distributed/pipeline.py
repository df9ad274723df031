"""Pipeline parallelism: compile K stage artifacts plus a manifest, run them on Ray actors.

``compile_pipeline`` optimizes the whole graph once (so constant folding and CSE see
everything), partitions it (:mod:`llmc.passes.partition`), compiles each stage with
``llmc.compile`` and writes ``pipeline.json`` next to the ``stageN.llmc`` files.
``PipelineRunner`` starts one actor per stage; each micro-batch's stage tasks are submitted
at once with the upstream results as object references, so Ray runs stage i on micro-batch
m while stage i+1 works on m-1. Results come back in submission order.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
from typing import Any, Iterable, Mapping

import numpy as np

from llmc.errors import ArtifactError, InputError
from llmc.pipeline import tensor_entry as _tensor_entry

from .cluster import ActorGroup, DistributedError, ensure_ray, import_ray, shutdown_ray
from .worker import ArtifactWorker

MANIFEST_FORMAT = "llmc-pipeline"
MANIFEST_VERSION = 1

__all__ = ["partition", "compile_pipeline", "describe_pipeline", "load_manifest",
           "run_distributed", "run_pipeline_local", "PipelineRunner"]


def partition(graph: Any, k: int, bindings: Mapping[str, int] | None = None, **kwargs: Any):
    """Split an llmc Graph into ``k`` stages (list of :class:`llmc.passes.partition.Stage`).

    Keyword arguments go to :func:`llmc.passes.partition.partition_graph` (``node_times``,
    ``flop_rate``, ``mem_bw``, ``net_bw``, ``tolerance``).
    """
    from llmc.passes.partition import partition_graph

    return partition_graph(graph, k, bindings, **kwargs).stages


def _pre_passes(opt_level: str) -> list[str]:
    """The level's graph passes minus fusion: fusion happens per stage, at stage compile."""
    from llmc.passes import level_passes

    return [p for p in level_passes(opt_level) if p != "fuse"]


def compile_pipeline(model: Any, stages: int, out_dir: str | os.PathLike, *,
                     target: str = "x86", bindings: Mapping[str, int] | None = None,
                     opt_level: str = "O3", example_inputs: Any = None,
                     dynamic_shapes: Any = None, input_shapes: dict | None = None,
                     mcpu: str | None = None, node_times: Any = None,
                     tolerance: float = 0.1, progress: Any = None) -> str:
    """Compile ``model`` (anything ``llmc.compile`` takes) into ``stages`` artifacts.

    Writes ``out_dir/stage{i}.llmc`` and ``out_dir/pipeline.json`` and returns the manifest
    path. ``bindings`` are the symbol values at which costs and transfer sizes are estimated
    (e.g. {"batch": 8, "seq": 128}); ``progress(i, k)`` is called before each stage build.
    """
    import llmc
    from llmc.frontend import import_model
    from llmc.passes import run_passes
    from llmc.passes.partition import partition_graph

    graph = import_model(model, example_inputs, dynamic_shapes=dynamic_shapes,
                         input_shapes=input_shapes)
    graph.verify()
    graph, _ = run_passes(graph, passes=_pre_passes(opt_level), bindings=bindings)
    part = partition_graph(graph, stages, bindings, node_times=node_times, tolerance=tolerance)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for st in part.stages:
        if progress is not None:
            progress(st.index, len(part.stages))
        art = llmc.compile(st.graph, target=target, opt_level=opt_level, mcpu=mcpu,
                           plan_dims=dict(part.bindings))
        got_in = [i["name"] for i in art.manifest["inputs"]]
        got_out = [o["name"] for o in art.manifest["outputs"]]
        if sorted(got_in) != sorted(i.name for i in st.inputs) or got_out != st.outputs:
            raise ArtifactError(f"stage {st.index} compiled with inputs {got_in} and outputs "
                                f"{got_out}, the partition says {[i.name for i in st.inputs]}"
                                f" and {st.outputs}")
        fname = f"stage{st.index}.llmc"
        path = art.save(os.path.join(out_dir, fname))
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        entries.append({**st.summary(), "artifact": fname, "sha256": digest})
    producer = {o: st.index for st in part.stages for o in st.outputs}
    manifest = {
        "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "model_name": graph.name,
        "target": target, "bindings": part.bindings, "cut_bytes": part.cut_bytes,
        "inputs": [_tensor_entry(graph, n) for n in graph.inputs],
        "outputs": [{**_tensor_entry(graph, n), "from": producer.get(n, -1)}
                    for n in graph.outputs],
        "stages": entries,
    }
    path = os.path.join(out_dir, "pipeline.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=1)
    os.replace(tmp, path)
    return path


def load_manifest(path: str | os.PathLike) -> dict:
    """Read and check a pipeline manifest; artifact paths become absolute."""
    path = os.fspath(path)
    try:
        with open(path) as fh:
            m = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path}: cannot read the pipeline manifest: {exc}") from None
    if m.get("format") != MANIFEST_FORMAT or m.get("version") != MANIFEST_VERSION:
        raise ArtifactError(f"{path}: not an llmc pipeline manifest (format "
                            f"{m.get('format')!r}, version {m.get('version')!r}); recompile "
                            "with `llmc compile --stages K`")
    base = os.path.dirname(os.path.abspath(path))
    for st in m["stages"]:
        st["path"] = os.path.join(base, st["artifact"])
        if not os.path.exists(st["path"]):
            raise ArtifactError(f"{path}: stage {st['index']} artifact {st['path']} is missing")
    return m


def _check_inputs(m: dict, inputs: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    names = [i["name"] for i in m["inputs"]]
    if not isinstance(inputs, Mapping):
        if isinstance(inputs, (list, tuple)) and len(inputs) == len(names):
            inputs = dict(zip(names, inputs))
        elif len(names) == 1:
            inputs = {names[0]: inputs}
        else:
            raise InputError(f"{where}: pass the inputs as a dict by name ({names})")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise InputError(f"{where}: missing inputs {missing}; the pipeline takes {names}")
    return {n: np.asarray(inputs[n]) for n in names}


def run_pipeline_local(manifest_path: str | os.PathLike,
                       batches: Iterable[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
    """Run the stages one after another in this process (no Ray): the reference for the
    distributed run, and a way to debug a pipeline."""
    m = load_manifest(manifest_path)
    workers = [ArtifactWorker(st["path"], input_names=[i["name"] for i in st["inputs"]])
               for st in m["stages"]]
    results = []
    for batch in batches:
        env: dict[str, np.ndarray] = dict(_check_inputs(m, batch, os.fspath(manifest_path)))
        for w in workers:
            env.update(w.run(env))
        results.append({o["name"]: env[o["name"]] for o in m["outputs"]})
    return results


class PipelineRunner(ActorGroup):
    """One Ray actor per stage; ``run(batches)`` streams micro-batches through them.

    ``ray_address`` joins a cluster (else a local one is started, and stopped by
    ``close``). ``threads`` is each actor's TVM thread count; ``num_cpus`` the CPUs Ray
    reserves per actor; ``max_in_flight`` bounds micro-batches submitted but not collected.
    Artifacts travel to the actors as bytes through the object store (so nodes need no
    shared file system) unless ``ship_bytes=False`` (then actors open the paths).
    """

    def __init__(self, manifest_path: str | os.PathLike, ray_address: str | None = None, *,
                 threads: int = 1, num_cpus: float = 1, max_in_flight: int | None = None,
                 ship_bytes: bool = True) -> None:
        self.manifest_path = os.fspath(manifest_path)
        self.manifest = load_manifest(self.manifest_path)
        self._started = ensure_ray(ray_address)
        ray = import_ray()
        cls = ray.remote(ArtifactWorker)
        self.actors = []
        for st in self.manifest["stages"]:
            src: Any = st["path"]
            if ship_bytes:
                with open(st["path"], "rb") as fh:
                    src = ray.put(fh.read())
            self.actors.append(cls.options(num_cpus=num_cpus).remote(
                src, threads, [i["name"] for i in st["inputs"]]))
        k = len(self.actors)
        self.max_in_flight = max_in_flight or 2 * k

    def _submit(self, ray: Any, inputs: dict[str, np.ndarray]) -> list:
        refs: list = []
        input_ref = ray.put(inputs)
        for st, actor in zip(self.manifest["stages"], self.actors):
            sources = sorted({i["from"] for i in st["inputs"]})
            args = [input_ref if s < 0 else refs[s] for s in sources]
            refs.append(actor.run.remote(*args))
        return refs

    def _collect(self, ray: Any, refs: list) -> dict[str, np.ndarray]:
        want = sorted({o["from"] for o in self.manifest["outputs"]})
        try:
            got = dict(zip(want, ray.get([refs[s] for s in want])))
        except ray.exceptions.RayActorError as exc:
            raise DistributedError(f"{self.manifest_path}: a stage actor died: {exc}") from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
            raise DistributedError(f"{self.manifest_path}: a stage failed: {cause}") from None
        return {o["name"]: got[o["from"]][o["name"]] for o in self.manifest["outputs"]}

    def run(self, batches: Iterable[Mapping[str, Any]]) -> list[dict[str, np.ndarray]]:
        """Outputs for each micro-batch, in order (as the single-process run gives them)."""
        ray = import_ray()
        pending: collections.deque = collections.deque()
        results: list[dict[str, np.ndarray]] = []
        for batch in batches:
            pending.append(self._submit(ray, _check_inputs(self.manifest, batch,
                                                           self.manifest_path)))
            if len(pending) >= self.max_in_flight:
                results.append(self._collect(ray, pending.popleft()))
        while pending:
            results.append(self._collect(ray, pending.popleft()))
        return results


def describe_pipeline(manifest_path: str | os.PathLike) -> str:
    """The per-stage report of a compiled pipeline (what `llmc compile --stages K` prints):
    nodes, GFLOP, estimated ms, bytes in and out, and the values flowing into each stage."""
    m = load_manifest(manifest_path)
    rows = [f"pipeline {m['model_name']}: {len(m['stages'])} stages, costs at {m['bindings']}",
            f"{'stage':>5} {'artifact':>12} {'nodes':>6} {'GFLOP':>9} {'est ms':>9} "
            f"{'in KiB':>10} {'out KiB':>10} {'weights MiB':>12}"]
    for st in m["stages"]:
        rows.append(f"{st['index']:>5} {st['artifact']:>12} {st['nodes']:>6} "
                    f"{st['flops'] / 1e9:>9.4f} {st['est_seconds'] * 1e3:>9.3f} "
                    f"{st['in_bytes'] / 1024:>10.1f} {st['out_bytes'] / 1024:>10.1f} "
                    f"{st['constant_bytes'] / 2**20:>12.2f}")
    for st in m["stages"]:
        ins = ", ".join(f"{i['name']} ({'input' if i['from'] < 0 else 'stage %d' % i['from']}, "
                        f"{i['bytes'] / 1024:.0f} KiB)" for i in st["inputs"])
        rows.append(f"  stage {st['index']} reads {ins}")
    return "\n".join(rows)


def run_distributed(path: str | os.PathLike, items: Iterable[Any], *, workers: int = 2,
                    ray_address: str | None = None, threads: int = 1) -> list[dict]:
    """One entry point for the CLI: a ``pipeline.json`` runs as a pipeline (one actor per
    stage), an ``.llmc`` artifact data-parallel on ``workers`` actors. Starts a local Ray
    cluster unless ``ray_address`` names one (and stops it again when done)."""
    from .data_parallel import DataParallel

    if os.fspath(path).endswith(".json"):
        with PipelineRunner(path, ray_address, threads=threads) as runner:
            return runner.run(items)
    with DataParallel(path, workers, ray_address, threads=threads) as dp:
        return dp.map(items)
