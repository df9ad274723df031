"""The `llmc` command line: compile, run, inspect.

Errors raised on purpose (LlmcError) print as one line and exit with status 1; `--debug`
shows the traceback. Anything else is a bug and says so.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from .errors import InputError, LlmcError


def _parse_input_shapes(items: Sequence[str] | None) -> dict | None:
    """`--input-shape name=1,3,224,224` (symbols allowed: name=batch,128)."""
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, dims = item.partition("=")
        if not sep or not name:
            raise InputError(f"--input-shape {item!r}: expected NAME=D1,D2,...")
        out[name] = [int(d) if d.strip().lstrip("-").isdigit() else d.strip() for d in dims.split(",")]
    return out


def _parse_dims(text: str | None) -> dict[str, int] | None:
    """`--plan-dims batch=1,seq=128`."""
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise InputError(f"--plan-dims {text!r}: expected NAME=INT,NAME=INT")
        out[name.strip()] = int(value)
    return out


def _split(value: str | list | None) -> list[str] | None:
    if not value:
        return None
    items = value if isinstance(value, list) else [value]
    return [p.strip() for item in items for p in item.split(",") if p.strip()]


def cmd_compile(args: argparse.Namespace) -> int:
    from .api import compile as llmc_compile

    t0 = time.perf_counter()
    print(f"llmc: compiling {args.model} for {args.target} ...", file=sys.stderr, flush=True)
    if args.stages:
        return _compile_stages(args, t0)
    art = llmc_compile(args.model, target=args.target, mcpu=args.mcpu, arch=args.arch,
                       input_shapes=_parse_input_shapes(args.input_shape), opt_level=args.opt_level,
                       passes=_split(args.passes), disable_passes=_split(args.disable_pass),
                       plan_dims=_parse_dims(args.plan_dims), precision=args.precision,
                       calib=args.calib, calibrator=args.calibrator, smoothquant=args.smoothquant,
                       group_size=args.group_size, prune=args.prune,
                       accuracy_budget=args.accuracy_budget, systolic_config=args.systolic_config,
                       tuning_db=args.tuning_db)
    if args.accuracy_report:
        if art.precision_info is None:
            raise InputError("--accuracy-report compares a lowered model with fp32: give --precision or --prune")
        if args.calib is None:
            raise InputError("--accuracy-report needs --calib data.npz (the inputs to compare on)")
        acc = art.accuracy_report(args.calib)
        print(acc.format())
        acc.save(args.accuracy_report)
        print(f"llmc: wrote accuracy report {args.accuracy_report}", file=sys.stderr)
    if args.report:
        print(art.report.format_table())
        plan = art.manifest["memory_plan"]
        print(f"memory plan: arena {plan['arena_bytes']} bytes for {plan['intermediate_bytes']} bytes "
              f"of intermediates (at {plan['at'] or 'static shapes'}); "
              f"{len(art.manifest['kernels'])} kernels")
    out = args.output or os.path.splitext(os.path.basename(args.model))[0] + ".llmc"
    art.save(out)
    size = os.path.getsize(out)
    print(f"llmc: wrote {out} ({size / 1e6:.2f} MB, {len(art.manifest['kernels'])} kernels, "
          f"{time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


def _compile_stages(args: argparse.Namespace, t0: float) -> int:
    """`llmc compile --stages K`: one artifact per pipeline stage plus pipeline.json."""
    from llmc.distributed import compile_pipeline, describe_pipeline

    out_dir = args.output or os.path.splitext(os.path.basename(args.model))[0] + "_stages"
    path = compile_pipeline(args.model, args.stages, out_dir, target=args.target, mcpu=args.mcpu,
                            opt_level=args.opt_level, input_shapes=_parse_input_shapes(args.input_shape),
                            bindings=_parse_dims(args.plan_dims),
                            progress=lambda i, k: print(f"llmc: building stage {i + 1} of {k}", file=sys.stderr, flush=True))
    print(describe_pipeline(path))
    print(f"llmc: wrote {path} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


def _load_npz(path: str) -> dict:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(f"{path}: no such inputs file") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable .npz of arrays ({exc})") from None


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from llmc.runtime import load

    if args.workers or args.ray_address or args.artifact.endswith(".json"):
        return _run_distributed(args)
    model = load(args.artifact)
    if not args.inputs:
        raise InputError("give the inputs with --inputs inputs.npz (arrays keyed by input name: "
                         + ", ".join(repr(s) for s in model.inputs) + ")")
    if len(args.inputs) > 1:
        raise InputError("several --inputs shards need --workers N (data-parallel on Ray)")
    inputs = _load_npz(args.inputs[0])
    if args.profile:
        from llmc.backends.systolic.cli import profiled_run, show_profile
        outputs, rep = profiled_run(model.run, inputs)
        print(show_profile(rep, args.report, args.plot))
    else:
        outputs = model.run(inputs)
    _report_outputs([outputs], args.output)
    if args.benchmark:
        stats = model.benchmark(inputs, repeat=args.benchmark)
        print(f"latency: median {stats['median_ms']:.3f} ms over {stats['repeat']} runs")
    return 0


def _report_outputs(results: list[dict], output: str | None) -> None:
    import numpy as np

    for i, outputs in enumerate(results):
        if output:
            path = output if len(results) == 1 else f"{os.path.splitext(output)[0]}_{i}.npz"
            np.savez(path, **outputs)
            print(f"llmc: wrote {', '.join(outputs)} to {path}", file=sys.stderr)
        for name, arr in outputs.items():
            flat = arr.reshape(-1)
            tag = f"[{i}] " if len(results) > 1 else ""
            print(f"{tag}{name}: {arr.dtype}{list(arr.shape)} first values "
                  f"{np.array2string(flat[:6], precision=5)}")


def _run_distributed(args: argparse.Namespace) -> int:
    """A pipeline.json (stages) or an artifact over several input shards, on Ray."""
    if not args.inputs:
        raise InputError("give the inputs with --inputs shard.npz (repeatable: one item per file)")
    if args.artifact.endswith(".json") and not (args.workers or args.ray_address):
        from llmc.distributed import run_pipeline_local
        results = run_pipeline_local(args.artifact, [_load_npz(p) for p in args.inputs])
    else:
        from llmc.distributed import run_distributed
        results = run_distributed(args.artifact, [_load_npz(p) for p in args.inputs],
                                  workers=args.workers or 2, ray_address=args.ray_address)
    _report_outputs(results, args.output)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """`llmc tune MODEL`: MetaSchedule records that `llmc compile --tuning-db` picks up."""
    from llmc.backends.x86.tune import tune_model

    print(f"llmc: tuning {args.model} for {args.target} (budget {args.budget}) ...", file=sys.stderr, flush=True)
    res = tune_model(args.model, args.db, budget=args.budget, trials=args.trials, mcpu=args.mcpu,
                     input_shapes=_parse_input_shapes(args.input_shape), opt_level=args.opt_level,
                     max_kernels=args.kernels)
    print(res.format())
    return 0


def cmd_dse(args: argparse.Namespace) -> int:
    """`llmc dse MODEL`: simulate the model on every array/SRAM design point."""
    from llmc.backends.systolic.cli import run_dse
    from llmc.calibration import load_batches
    from llmc.passes import run_passes
    from llmc.passes.numerics import random_inputs

    from .frontend import import_model

    graph = import_model(args.model, input_shapes=_parse_input_shapes(args.input_shape))
    graph, _ = run_passes(graph, level="O3")
    inputs = _load_npz(args.inputs) if args.inputs else random_inputs(graph, _parse_dims(args.plan_dims))
    calibration = load_batches(args.calib, graph) if args.calib else None
    _, table = run_dse(graph, inputs, arrays=args.arrays, sram=args.sram, base=args.systolic_config,
                       calibration=calibration, plot_path=args.plot)
    print(table)
    if args.plot:
        print(f"llmc: wrote {args.plot}", file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    path = args.model
    if path.endswith(".llmc"):
        from llmc.runtime.format import read_artifact
        from llmc.runtime.loader import check_version

        manifest, members = read_artifact(path, path)
        check_version(manifest, path)
        print(json.dumps({k: v for k, v in manifest.items() if k != "kernels"}, indent=1, sort_keys=True))
        print(f"kernels: {len(manifest.get('kernels', []))}; members: "
              + ", ".join(f"{k} ({len(v)} bytes)" for k, v in members.items()))
        return 0
    from .frontend import import_model

    graph = import_model(path, input_shapes=_parse_input_shapes(args.input_shape))
    if args.graph or args.opt_level:
        from llmc.passes import run_passes
        graph, _ = run_passes(graph, level=args.opt_level or "O3")
    if args.graph:
        from .visualize import write_graph
        print(f"llmc: wrote {write_graph(graph, args.graph)}", file=sys.stderr)
    else:
        print(graph)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmc", description="llmc: compile neural-network models ahead of time")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile an ONNX model into a .llmc artifact")
    c.add_argument("model", help="model.onnx")
    c.add_argument("--target", default="x86", help="x86 (default), cuda, arm64 or systolic")
    c.add_argument("--systolic-config", metavar="tpu-like|edge|FILE.json",
                   help="systolic: the simulated array (default edge)")
    c.add_argument("--arch", default=None, help="cuda: sm_80|sm_86|sm_89|sm_90 (default: the local GPU's, else sm_80)")
    c.add_argument("--mcpu", default=None, help="x86 CPU to build for (default: this machine's)")
    c.add_argument("-o", "--output", help="artifact path (default: MODEL.llmc)")
    c.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..",
                   help="fix or name an input's dims (repeatable)")
    c.add_argument("-O", dest="opt_level", default="O3", choices=["O0", "O1", "O2", "O3", "0", "1", "2", "3"],
                   help="optimization level: -O0 (as imported) .. -O3 (every pass, default)")
    c.add_argument("--passes", help="explicit comma-separated pass list (overrides -O)")
    c.add_argument("--disable-pass", action="append", metavar="NAME", help="skip a pass (repeatable)")
    c.add_argument("--report", action="store_true", help="print what each pass did")
    c.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "int8", "int4"],
                   help="lower weights/activations (int8 needs --calib; int4 is weight-only)")
    c.add_argument("--calib", metavar="DATA.npz", help="calibration inputs (by input name; a leading axis = batches)")
    c.add_argument("--calibrator", default="minmax", choices=["minmax", "percentile", "entropy"])
    c.add_argument("--smoothquant", action="store_true", help="int8: SmoothQuant (alpha 0.5)")
    c.add_argument("--group-size", type=int, default=128, choices=[32, 64, 128], help="int4 weight group size")
    c.add_argument("--prune", metavar="magnitude:0.5|2:4", help="prune weights (size only: kernels stay dense)")
    c.add_argument("--accuracy-budget", metavar="cosine:0.999",
                   help="keep the layers that break this budget (on --calib) at fp32")
    c.add_argument("--accuracy-report", metavar="OUT.json", help="print and save accuracy against fp32 on --calib")
    c.add_argument("--stages", type=int, default=0, metavar="K",
                   help="split into K pipeline stages (one artifact each + pipeline.json in -o DIR)")
    c.add_argument("--plan-dims", metavar="SYM=N,..", help="symbol values for the reported memory plan (default 1)")
    c.add_argument("--tuning-db", metavar="DIR", help="x86: use `llmc tune` records that beat the default schedules")
    c.set_defaults(func=cmd_compile)

    t = sub.add_parser("tune", help="tune a model's heaviest kernels with MetaSchedule (x86)")
    t.add_argument("model", help="model.onnx")
    t.add_argument("--target", default="x86", choices=["x86"])
    t.add_argument("--mcpu", default=None, help="x86 CPU to tune for (default: this machine's)")
    t.add_argument("--budget", default="10m", help="wall-clock budget, e.g. 10m, 90s (default 10m)")
    t.add_argument("--trials", type=int, default=None, help="stop after N measured trials in all")
    t.add_argument("--kernels", type=int, default=None, metavar="N", help="tune only the N heaviest kernels")
    t.add_argument("--db", default="llmc-tuning", metavar="DIR", help="tuning database (default ./llmc-tuning)")
    t.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..",
                   help="fix input dims as `llmc compile` will (kernels with symbolic dims are not tuned)")
    t.add_argument("-O", dest="opt_level", default="O3", choices=["O0", "O1", "O2", "O3", "0", "1", "2", "3"])
    t.set_defaults(func=cmd_tune)

    r = sub.add_parser("run", help="run a compiled artifact (or a pipeline.json) on inputs from .npz files")
    r.add_argument("artifact")
    r.add_argument("--inputs", action="append", help=".npz keyed by the model's input names "
                   "(repeat for several shards with --workers)")
    r.add_argument("--profile", action="store_true",
                   help="systolic artifacts: per-layer cycles, utilization, traffic and energy")
    r.add_argument("--report", metavar="OUT.json", help="with --profile: save the report")
    r.add_argument("--plot", metavar="OUT.svg", help="with --profile: plot cycles and utilization per layer")
    r.add_argument("--workers", type=int, default=0, help="data-parallel on N Ray actors")
    r.add_argument("--ray-address", help="join this Ray cluster (default: start a local one)")
    r.add_argument("--output", help="write outputs to this .npz")
    r.add_argument("--benchmark", type=int, default=0, metavar="N", help="also time N runs")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("inspect", help="print a model's IR or an artifact's manifest")
    i.add_argument("model", help="model.onnx or model.llmc")
    i.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..")
    i.add_argument("-O", dest="opt_level", choices=["O0", "O1", "O2", "O3", "0", "1", "2", "3"],
                   help="print the graph after these passes (default: as imported)")
    i.add_argument("--graph", metavar="OUT.svg|OUT.dot",
                   help="draw the optimized graph (fused groups as clusters) instead of printing it")
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("dse", help="design-space exploration of the simulated systolic array")
    d.add_argument("model")
    d.add_argument("--arrays", default="8x8,16x16,32x32,64x64,128x128")
    d.add_argument("--sram", default="64K,256K,1M")
    d.add_argument("--systolic-config", help="base preset or JSON (default edge)")
    d.add_argument("--inputs", help=".npz inputs to simulate (default: random at --plan-dims)")
    d.add_argument("--calib", help="calibration .npz (default: the inputs)")
    d.add_argument("--plan-dims", metavar="SYM=N,..", help="symbol values for random inputs")
    d.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,..")
    d.add_argument("--plot", metavar="OUT.svg", help="Pareto plot (latency vs energy)")
    d.set_defaults(func=cmd_dse)

    from .llm_cli import add_subcommands
    add_subcommands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LlmcError as exc:
        if args.debug:
            raise
        print(f"llmc: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("llmc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in llmc, not in the user's input
        if args.debug:
            raise
        print(f"llmc: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
