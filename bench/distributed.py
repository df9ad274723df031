"""llmc on Ray: partition reports, data-parallel and pipeline throughput, 1 vs 2 workers.

1. The partitioner's per-stage report (GFLOP, estimated ms, bytes in/out, weights) for
   MiniLM and a 4-block GPT-2-style decoder at batch 8, seq 128, for K = 2, 3, 4.
2. Data-parallel: one artifact (the GPT-2-style decoder), N items of [8, 128, 256], run by
   one process (TVM on all cores), then by 1 and 2 Ray actors (1 TVM thread each).
3. Pipeline: the decoder as 1 stage vs 2 stages on Ray, N micro-batches.
Prints items/s, seconds per item and the speed-up; medians of --repeat runs.
Usage: python bench/distributed.py [--items 24] [--repeat 3] [--skip-minilm] [--partitions-only]
       [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from bench.common import fair_environment, machine  # noqa: E402

THREADS = fair_environment()

import numpy as np  # noqa: E402

BINDINGS = {"batch": 8, "seq": 128}


def decoder(blocks: int = 4, dim: int = 256):
    """A GPT-2-style decoder: ``blocks`` GPT2Blocks in a row (tests/models.py's block)."""
    import torch

    import models

    torch.manual_seed(0)
    return torch.nn.Sequential(*[models.GPT2Block(dim, 4) for _ in range(blocks)]).eval()


def decoder_graph(model):
    import torch

    import models
    from llmc.frontend import import_model

    b = torch.export.Dim("batch", min=2, max=64)
    t = torch.export.Dim("seq", min=2, max=512)
    return import_model(model, (models.gpt2_input(2, 8),), dynamic_shapes=({0: b, 1: t},))


def minilm_graph():
    import torch

    import models
    from llmc.frontend import import_model

    ids, mask = models.minilm_tokenize()
    b, s = torch.export.Dim("batch", min=2, max=64), torch.export.Dim("seq", min=2, max=512)
    return import_model(models.minilm("eager"), (ids, mask),
                        dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}})


def partition_report(name: str, graph, ks=(2, 3, 4)) -> list[dict]:
    from llmc.distributed.pipeline import _pre_passes
    from llmc.passes import run_passes
    from llmc.passes.partition import partition_graph

    g = run_passes(graph, passes=_pre_passes("O3"))[0]
    out = []
    for k in ks:
        part = partition_graph(g, k, BINDINGS)
        print(f"\n{name}, K={k}, bindings {BINDINGS}: bytes across cuts "
              f"{[f'{c / 1024:.0f} KiB' for c in part.cut_bytes]}")
        print(part.table())
        for st in part.stages[1:]:
            print(f"  into stage {st.index}: " + ", ".join(
                f"{i.name} {g.types[i.name]} {st.value_bytes[i.name] / 1024:.0f} KiB "
                f"(from {'input' if i.source < 0 else 'stage %d' % i.source})"
                for i in st.inputs))
        out.append({"model": name, "k": k, "cut_bytes": part.cut_bytes,
                    "stages": [st.summary() for st in part.stages]})
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--partitions-only", action="store_true",
                    help="print the partition reports, skip the Ray runs")
    ap.add_argument("--json")
    args = ap.parse_args()

    import ray

    import llmc
    from llmc.distributed import DataParallel, PipelineRunner, compile_pipeline

    print(f"machine: {machine()}")
    model = decoder()
    graph = decoder_graph(model)
    report = {"machine": machine(), "bindings": BINDINGS, "partitions": [], "runs": []}
    if not args.skip_minilm:
        report["partitions"] += partition_report("MiniLM (all-MiniLM-L6-v2)", minilm_graph())
    report["partitions"] += partition_report("GPT-2-style decoder (4 blocks, dim 256)", graph)
    if args.partitions_only:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(report, fh, indent=1)
        return 0

    tmp = tempfile.mkdtemp(prefix="llmc-bench-dist-")
    t0 = time.perf_counter()
    single_path = llmc.compile(graph, target="x86").save(os.path.join(tmp, "decoder.llmc"))
    pipe2 = compile_pipeline(graph, 2, os.path.join(tmp, "pipe2"), bindings=BINDINGS)
    print(f"\ncompiled the decoder (1 artifact + 2 stages) in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(0)
    items = [{graph.inputs[0]: rng.standard_normal((BINDINGS["batch"], BINDINGS["seq"], 256))
              .astype(np.float32)} for _ in range(args.items)]

    rows = []
    single = llmc.load(single_path)
    single.run(items[0])
    s = timed(lambda: [single.run(it) for it in items], args.repeat)
    rows.append(("one process, TVM {} threads".format(THREADS), s))

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        for workers, threads in ((1, 1), (1, 2), (2, 1)):
            with DataParallel(single_path, workers=workers, threads=threads) as dp:
                dp.map(items[:workers * 2])  # warm: actors started, artifact loaded
                rows.append((f"data-parallel, {workers} Ray actor(s) x {threads} thread(s)",
                             timed(lambda: dp.map(items), args.repeat)))
        one_stage = os.path.join(tmp, "pipe1")
        pipe1 = compile_pipeline(graph, 1, one_stage, bindings=BINDINGS)
        for name, path in (("pipeline, 1 stage", pipe1), ("pipeline, 2 stages", pipe2)):
            with PipelineRunner(path, threads=1) as runner:
                runner.run(items[:2])
                rows.append((f"{name} (1 actor/stage x 1 thread)",
                             timed(lambda: runner.run(items), args.repeat)))
    finally:
        ray.shutdown()

    base = rows[1][1]
    print(f"\n{args.items} items of [8, 128, 256] through the 4-block decoder, "
          f"median of {args.repeat}")
    print("setup | seconds | items/s | ms/item | speed-up vs 1 actor")
    print("--- | --- | --- | --- | ---")
    for name, sec in rows:
        print(f"{name} | {sec:.2f} | {args.items / sec:.1f} | {1e3 * sec / args.items:.1f} | "
              f"{base / sec:.2f}x")
        report["runs"].append({"setup": name, "seconds": sec, "items": args.items})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
