"""`llmc tune`: MetaSchedule search over llmc's own packed-matmul schedule, records reused by
`llmc compile --tuning-db DIR`.

Why this shape: MetaSchedule's generic CPU space reached only 0.66x PyTorch on the 128x1024x4096
matmul in 10 minutes here, while llmc's hand schedule on weights pre-packed at compile time
reaches ~1.5x. So the search starts from the packed PrimFunc llmc really builds and from a
parametrized copy of its register-tiled schedule (rows per tile, 32-wide panels per tile, K
unroll, loop order are MetaSchedule decisions; the epilogue runs either as llmc's separate pass
or per tile, see :class:`PackedConfig`; :data:`DEFAULT_CONFIG` is llmc's own schedule, a point
of the space); batched matmuls with two computed operands use MetaSchedule's generic space
(plain "llvm" rules). On MiniLM (fp32, batch 1, seq 128) the packed defaults already run at
~210-230 GFLOP/s, about the 2-core AVX-512 FMA roof here, and no point of the space beat them
by more than :data:`MARGIN`. On a QDQ-quantized MiniLM (attention left unfused) tuning the
batched ``matmul`` kernels won 1.9x end to end, which exposed a default-schedule bug (fixed:
the default now runs that model in 29 ms vs 28 ms tuned). Each task's best record is then
timed against llmc's default
schedule, interleaved, and both figures are kept: a compile uses the tuned schedule only where
it measured faster.

Database layout (one directory per target, so a record never leaks to another CPU)::

    DIR/<target key>/database_workload.json        MetaSchedule JSONDatabase (workload = the
    DIR/<target key>/database_tuning_record.json   kernel's PrimFunc, structurally hashed)
    DIR/<target key>/llmc_tuning.json              per workload: kernel, kind, default_us,
                                                   tuned_us, trials (what the compile decides on)

Builds and measurements run in-process (no worker pool): a fresh worker pays seconds of TVM
import per start, and MetaSchedule's default builder also imports ``tvm.s_tir.tensor_intrin``
(17-60 s here), which the llvm spaces used here never need.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ...errors import InputError
from .schedule import _blocks, _is_reduction, _parallel_vectorize, schedule_func
from .target import host_target, vector_lanes

TUNABLE = ("matmul_packed", "fused_matmul_epilogue", "matmul")
SIDECAR = "llmc_tuning.json"
# a tuned kernel replaces the default only when measured at least this much faster: on a
# loaded machine two equal kernels differ by a few percent from one measurement to the next
MARGIN = 0.03


def tuned_wins(default_us: float | None, tuned_us: float | None) -> bool:
    """Whether a tuned time beats the default time by more than the noise :data:`MARGIN`."""
    return default_us is not None and tuned_us is not None and \
        tuned_us < default_us * (1.0 - MARGIN)


# ----------------------------------------------------------------------------- keys
def target_key(target: dict) -> str:
    """Directory name for a target: readable CPU name plus a hash of the whole target."""
    text = json.dumps({k: target[k] for k in sorted(target) if k != "num-cores"}, sort_keys=True)
    cpu = re.sub(r"[^A-Za-z0-9_.-]", "_", str(target.get("mcpu", "cpu")))
    return f"{target.get('kind', 'llvm')}-{cpu}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def workload_mod(func: tirx.PrimFunc) -> tvm.IRModule:
    """The IRModule a kernel is tuned and looked up as (same normalization on both sides).

    A deep copy: a Schedule over ``func.with_attr(...)`` rewrites the body that the original
    shares in place (measured with this TVM), which would corrupt the caller's kernel.
    """
    fresh = tvm.ir.load_json(tvm.ir.save_json(func))
    fresh = fresh.with_attr("global_symbol", "main")
    # MetaSchedule's task scheduler estimates every task's FLOPs with a visitor that fails on
    # a TIR Let (the erf of a fused GELU epilogue has one); a given "estimated_flops" skips it
    return tvm.IRModule({"main": fresh.with_attr("estimated_flops", _reduction_flops(fresh))})


def _reduction_flops(func: tirx.PrimFunc) -> int:
    """2 x the iteration count of the blocks with a reduction axis (2*M*K*N for a matmul)."""
    sch = s_tir.Schedule(tvm.IRModule({"main": tvm.ir.load_json(tvm.ir.save_json(func))}))
    total = 0
    for b in _blocks(sch):
        blk = sch.get(b)
        if any(iv.iter_type == tirx.IterVar.CommReduce for iv in blk.iter_vars):
            n = 1
            for iv in blk.iter_vars:
                ext = iv.dom.extent
                n *= int(ext) if isinstance(ext, tirx.IntImm) else 1
            total += 2 * n
    return max(1, total)


def workload_key(func: tirx.PrimFunc) -> str:
    """Structural hash of the normalized kernel: the sidecar's key."""
    return f"{tvm_ffi.structural_hash(workload_mod(func)) & 0xFFFFFFFFFFFFFFFF:016x}"


def _kind(func: tirx.PrimFunc) -> str:
    return str(func.attrs["llmc_kind"]) if func.attrs and "llmc_kind" in func.attrs else "injective"


def is_static(func: tirx.PrimFunc) -> bool:
    """Only kernels with static shapes can be measured (and so tuned)."""
    return all(isinstance(d, tirx.IntImm) for b in func.params for d in b.shape)


def kernel_flops(func: tirx.PrimFunc) -> float:
    """2 x the iteration count of the reduction blocks (2*M*K*N for a matmul): the ranking
    of tasks and the GFLOP/s figures."""
    sch = s_tir.Schedule(workload_mod(func))
    total = 0.0
    for b in _blocks(sch):
        blk = sch.get(b)
        if _is_reduction(sch, b):
            n = 1.0
            for iv in blk.iter_vars:
                ext = iv.dom.extent
                n *= int(ext) if isinstance(ext, tirx.IntImm) else 1
            total += 2.0 * n
    return total


# ----------------------------------------------------------------------------- sidecar
def _load_sidecar(path: str) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable llmc tuning file ({exc})") from None
    return data if isinstance(data, dict) else {}


def _save_sidecar(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def _no_tensor_intrin():
    """Let TuneContext skip ``import tvm.s_tir.tensor_intrin`` (17-60 s; no llvm space here
    tensorizes). Restores the real module entry afterwards."""
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if isinstance(sys.modules.get(name), types.ModuleType) and \
                not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]


def _ms():
    from tvm.s_tir import meta_schedule as ms
    return ms


# ----------------------------------------------------------------------------- compile-side lookup
class TunedSchedules:
    """What `llmc compile --tuning-db DIR` consults: per kernel, the tuned schedule when the
    database has one for this workload and target that measured faster than the default."""

    def __init__(self, db_dir: str, target: dict) -> None:
        if not os.path.isdir(db_dir):
            raise InputError(f"--tuning-db {db_dir}: no such directory (make one with `llmc tune`)")
        self.dir = os.path.join(db_dir, target_key(target))
        self.target = tvm.target.Target(target)
        self.records = _load_sidecar(os.path.join(self.dir, SIDECAR))
        self._db = None

    def _database(self):
        if self._db is None:
            ms = _ms()
            self._db = ms.database.JSONDatabase(work_dir=self.dir, allow_missing=True)
        return self._db

    def lookup(self, func: tirx.PrimFunc) -> tuple[tirx.PrimFunc, str] | None:
        """(scheduled func, "tuned ...") or None to keep llmc's default schedule."""
        if not self.records or _kind(func) not in TUNABLE or not is_static(func):
            return None
        rec = self.records.get(workload_key(func))
        if not rec or not tuned_wins(rec.get("default_us"), rec.get("tuned_us")):
            return None
        try:
            sch = self._database().query_schedule(workload_mod(func), self.target,
                                                  workload_name="main")
        except Exception:  # a record that no longer replays: keep the default
            return None
        if sch is None:
            return None
        new = sch.mod["main"]
        if func.attrs and "global_symbol" in func.attrs:
            new = new.with_attr("global_symbol", func.attrs["global_symbol"])
        else:
            new = new.without_attr("global_symbol")
        return new, (f"tuned ({rec['tuned_us']:.1f} us vs default {rec['default_us']:.1f} us)")


# ----------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class PackedConfig:
    """One point of the packed-matmul space (what a trace's decisions pick), for tests and
    for naming the default: rows per tile, 32-wide panels per tile, K unroll, loop order, and
    whether the epilogue runs per tile (on the tile just written, still in L1) or as llmc's
    separate parallel pass over the whole output."""

    rows: int = 8
    panels: int = 1
    kunroll: int = 4
    row_outer: bool = False
    epilogue_in_tile: bool = False


DEFAULT_CONFIG = PackedConfig()  # llmc's schedule (backends/x86/schedule.py _packed_tile)


def _sampled_tile(sch: s_tir.Schedule, blk, rows: int, row_outer: bool,
                  fixed: PackedConfig | None = None):
    """llmc's packed register tile with MetaSchedule decisions for its sizes (or the sizes of
    ``fixed``); returns the fused parallel loop over tiles.

    N stays split by 32 (the packed panel width); the tile takes 1-4 panels, 1..16 rows, and
    K is unrolled by 1..8. ``row_outer`` swaps the parallel (panel, row-tile) loop order.
    """
    def factors(loop, most: int, value: int | None):
        if fixed is not None:
            return [None, value]
        return sch.sample_perfect_tile(loop, n=2, max_innermost_factor=most)

    i, j, k = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, 32])
    jo, jp = sch.split(jo, factors(jo, 4, fixed and fixed.panels))
    ko, ki = sch.split(k, factors(k, 8, fixed and fixed.kunroll))
    if rows > 1:
        io, ii = sch.split(i, factors(i, 16, fixed and fixed.rows))
    else:
        io, ii = i, None
    outer = [io, jo] if row_outer else [jo, io]
    sch.reorder(*outer, ko, ki, *([ii] if ii is not None else []), jp, ji)
    acc = sch.cache_write(blk, 0, "local")
    # unit loops kept: the loop count must not depend on the sampled sizes, or the traces
    # of mutated candidates stop replaying
    sch.reverse_compute_at(acc, outer[1], preserve_unit_loops=True)
    fused = sch.fuse(*outer)
    sch.parallel(fused)
    sch.unroll(ki)
    if ii is not None:
        sch.unroll(ii)
    sch.unroll(jp)
    sch.vectorize(ji)
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.decompose_reduction(blk, ko)
    return fused


def _packed_schedule(sch: s_tir.Schedule, kind: str, lanes: int, row_outer: bool,
                     epilogue_in_tile: bool, fixed: PackedConfig | None = None
                     ) -> s_tir.Schedule:
    """One design space of the packed kernels (sampled sizes, or ``fixed``'s).

    ``epilogue_in_tile``: the output block (bias, activation, residual, or the plain copy of
    ``matmul_packed``) is computed under the tile loop right after the accumulator is
    written back, instead of in a second parallel pass that re-reads the whole matmul
    result from L2 / memory (786 KB for MiniLM's 128x1536 FFN). Only without a
    ``matmul_tail`` block (the output then joins two tiles) and with one output block.
    """
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    if epilogue_in_tile and "matmul_tail" in names:
        raise ValueError("epilogue in tile: the output joins matmul and matmul_tail")
    fused = None
    if "matmul" in names:
        fused = _sampled_tile(sch, sch.get_sblock("matmul"), 8, row_outer, fixed)
    if "matmul_tail" in names:
        _sampled_tile(sch, sch.get_sblock("matmul_tail"), 1, row_outer, fixed)
    root = sch.get_sblock("root")
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(root)}
    if kind == "fused_matmul_epilogue":
        for b in _blocks(sch):
            name = sch.get(b).name_hint
            if name not in outputs and not _is_reduction(sch, b) and \
                    not name.endswith("_init"):
                sch.compute_inline(b)
    out_blocks = list(sch.get_output_blocks(root))
    if epilogue_in_tile:
        if fused is None or len(out_blocks) != 1:
            raise ValueError("epilogue in tile: needs one matmul tile and one output block")
        (out,) = out_blocks
        sch.reverse_compute_at(out, fused, preserve_unit_loops=True)
        inner = sch.get_loops(out)[-1]  # the tile's 32 * panels columns
        _, vi = sch.split(inner, [None, lanes])
        sch.vectorize(vi)
        return sch
    for b in out_blocks:
        _parallel_vectorize(sch, b, lanes)
    return sch


def packed_config_func(func: tirx.PrimFunc, config: PackedConfig, lanes: int
                       ) -> tirx.PrimFunc:
    """``func`` scheduled at one fixed point of the tuning space (sizes must divide the
    extents, as sampled ones do): how tests reach the default and each new dimension."""
    sch = s_tir.Schedule(workload_mod(func))
    _packed_schedule(sch, _kind(func), lanes, config.row_outer, config.epilogue_in_tile, config)
    return sch.mod["main"]


def _packed_space(kind: str, lanes: int) -> Callable:
    """Design spaces for ``matmul_packed`` / ``fused_matmul_epilogue``: both loop orders x
    epilogue as a separate pass (llmc's default) or per tile, when the kernel allows it."""

    def space(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        # fresh copies of the module: scheduling ``sch`` itself rewrites the task's module in
        # place (see workload_mod), after which no trace replays on it
        out = []
        for epi in (False, True):
            for ro in (False, True):
                fresh = s_tir.Schedule(workload_mod(sch.mod["main"]), seed=sch.fork_seed())
                try:
                    out.append(_packed_schedule(fresh, kind, lanes, ro, epi))
                except Exception:  # noqa: BLE001 - a kernel without a per-tile epilogue
                    if not epi:
                        raise
        return out
    return space


# ----------------------------------------------------------------------------- in-process build/run
_BUILT: dict[str, object] = {}
_COUNTER = itertools.count()


def _compile_kernel(mod: tvm.IRModule, target) -> object:
    """One PrimFunc module -> runtime.Module (JIT, in this process)."""
    return tvm.compile(mod, target=target).jit()


def _random_args(shapes: list[tuple[tuple, str]], dev) -> list:
    rng = np.random.default_rng(0)
    out = []
    for shape, dtype in shapes:
        if dtype.startswith("float"):
            arr = rng.standard_normal(shape).astype(dtype)
        else:
            arr = np.zeros(shape, dtype)
        out.append(tvm.runtime.tensor(arr, dev))
    return out


def _time_module(rt_mod, args, number: int = 3, repeat: int = 5) -> list[float]:
    dev = tvm.cpu()
    f = rt_mod.time_evaluator(rt_mod.entry_name, dev, number=number, repeat=repeat,
                              min_repeat_ms=20)
    return [float(x) for x in f(*args).results]


def _make_builder_runner(deadline: float = float("inf")):
    """A MetaSchedule Builder and Runner that compile and time in this process.

    Past ``deadline`` (perf_counter seconds) they refuse the rest of a batch at once, so the
    budget overshoots by one candidate, not by a whole batch.
    """
    ms = _ms()
    from tvm.ir.utils import derived_object

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for bi in build_inputs:
                if time.perf_counter() >= deadline:
                    results.append(ms.builder.BuilderResult(None, "tuning budget exhausted"))
                    continue
                try:
                    token = f"llmc-inproc:{next(_COUNTER)}"
                    _BUILT[token] = _compile_kernel(bi.mod, bi.target)
                    results.append(ms.builder.BuilderResult(token, None))
                except Exception as exc:  # a schedule LLVM rejects: a failed trial
                    results.append(ms.builder.BuilderResult(None, str(exc)[-300:]))
            return results

    @derived_object
    class InProcessRunner(ms.runner.PyRunner):
        def run(self, runner_inputs):
            futures = []
            dev = tvm.cpu()
            for ri in runner_inputs:
                rt_mod = _BUILT.pop(str(ri.artifact_path), None)
                try:
                    if rt_mod is None or time.perf_counter() >= deadline:
                        raise RuntimeError("tuning budget exhausted")
                    shapes = [(tuple(int(d) for d in a.shape), str(a.dtype)) for a in ri.args_info]
                    secs, err = _time_module(rt_mod, _random_args(shapes, dev)), None
                except Exception as exc:
                    secs, err = None, str(exc)[-300:]
                res = ms.runner.RunnerResult(secs, err)
                futures.append(ms.runner.RunnerFuture(lambda: True, lambda res=res: res))
            return futures

    return InProcessBuilder(), InProcessRunner()


# ----------------------------------------------------------------------------- tuning
@dataclass
class TuneTask:
    """One distinct kernel of the model (identical layers share one task)."""

    name: str
    kind: str
    func: tirx.PrimFunc
    key: str
    flops: float
    count: int = 1


@dataclass
class TuneResult:
    """What one `llmc tune` run measured, per task (also written to the sidecar)."""

    db_dir: str
    seconds: float
    trials: int
    rows: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def format(self) -> str:
        """The table the CLI prints."""
        lines = [f"{'kernel':<34}{'x':>3}{'default us':>12}{'tuned us':>10}{'GFLOP/s def':>13}"
                 f"{'tuned':>8}  used"]
        for r in self.rows:
            lines.append(f"{r['kernel'][:33]:<34}{r['count']:>3}{r['default_us']:>12.1f}"
                         f"{(r['tuned_us'] or float('nan')):>10.1f}{r['default_gflops']:>13.1f}"
                         f"{(r['tuned_gflops'] or 0):>8.1f}  {'tuned' if r['use_tuned'] else 'default'}")
        if self.skipped:
            lines.append("not tuned: " + "; ".join(self.skipped))
        lines.append(f"{self.trials} trials in {self.seconds:.1f} s; database {self.db_dir}")
        return "\n".join(lines)


def parse_budget(text: str | float | int) -> float:
    """'10m', '90s', '1h', '1.5m' or a number of seconds -> seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if not m:
        raise InputError(f"--budget {text!r}: expected e.g. 10m, 90s, 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def extract_tasks(mod: tvm.IRModule, max_kernels: int | None = None
                  ) -> tuple[list[TuneTask], list[str]]:
    """The model's distinct static matmul kernels, heaviest (FLOPs x uses) first."""
    tasks: dict[str, TuneTask] = {}
    skipped: list[str] = []
    for gv, func in mod.functions.items():
        if not isinstance(func, tirx.PrimFunc) or _kind(func) not in TUNABLE:
            continue
        if not is_static(func):
            skipped.append(f"{gv.name_hint} (symbolic dims: fix them with --input-shape)")
            continue
        key = workload_key(func)
        if key in tasks:
            tasks[key].count += 1
            continue
        tasks[key] = TuneTask(gv.name_hint, _kind(func), func, key, kernel_flops(func))
    ranked = sorted(tasks.values(), key=lambda t: -t.flops * t.count)
    if max_kernels is not None:
        skipped += [f"{t.name} (beyond --kernels {max_kernels})" for t in ranked[max_kernels:]]
        ranked = ranked[:max_kernels]
    return ranked, skipped


def _progress(total: int | None):
    try:
        from tqdm import tqdm
        return tqdm(total=total, unit="trial", file=sys.stderr, dynamic_ncols=True)
    except ImportError:  # pragma: no cover - tqdm is in the dev environment
        return None


def _budget_callback(tasks: list[TuneTask], deadline: float, total: int | None, t0: float,
                     found_at: dict[int, float] | None = None):
    """MeasureCallback: progress per measured batch; terminates every task at the deadline.

    ``found_at`` (task id -> seconds since ``t0``) gets the time each task's best measured
    candidate so far was found: "the tuning time that reaches the best figure"."""
    found_at = found_at if found_at is not None else {}
    ms = _ms()
    from tvm.ir.utils import derived_object

    bar = _progress(total)
    best: dict[int, float] = {}
    done: dict[int, int] = {}

    @derived_object
    class Budget(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
                  runner_results):
            done[task_id] = done.get(task_id, 0) + len(runner_results)
            for rr in runner_results:
                if rr.run_secs:
                    t = float(np.median([float(x) for x in rr.run_secs]))
                    if t < best.get(task_id, float("inf")):
                        best[task_id] = t
                        found_at[task_id] = time.perf_counter() - t0
            task = tasks[task_id]
            b = best.get(task_id)
            msg = (f"{task.name[:28]}: {done[task_id]} trials, best "
                   + (f"{task.flops / b / 1e9:.1f} GFLOP/s" if b else "none yet"))
            if bar is not None:
                bar.set_postfix_str(msg, refresh=False)
                bar.update(len(runner_results))
            else:
                print(f"llmc tune: [{task_id + 1}/{len(tasks)}] {msg} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            if time.perf_counter() >= deadline:
                for i, rec in enumerate(task_scheduler.tasks_):
                    # a task whose space ran out is terminated already, and terminating it
                    # twice fails a TVM check (seen at the end of a 10-minute MiniLM run)
                    if not rec.is_terminated:
                        task_scheduler.terminate_task(i)

        def close(self):
            if bar is not None:
                bar.close()

    return Budget()


def _space_for(task: TuneTask, lanes: int):
    ms = _ms()
    if task.kind in ("matmul_packed", "fused_matmul_epilogue"):
        return ms.space_generator.ScheduleFn(
            _packed_space(task.kind, lanes), sch_rules=[],
            postprocs=[], mutator_probs={ms.mutator.MutateTileSize(): 1.0})
    # batched matmul: MetaSchedule's generic CPU space, with the plain "llvm" rules spelled
    # out: the default rules for a VNNI CPU (znver4 here) tensorize with dot_16x4_vnni, which
    # needs tvm.s_tir.tensor_intrin (not imported, see _no_tensor_intrin) and never applies
    # to a float32 kernel anyway
    return ms.space_generator.PostOrderApply(
        sch_rules=ms.ScheduleRule.create("llvm"), postprocs=ms.Postproc.create("llvm"),
        mutator_probs=ms.Mutator.create("llvm"))


def _compare(task: TuneTask, tuned_func: tirx.PrimFunc | None, target, lanes: int,
             rounds: int = 9) -> tuple[float, float | None]:
    """Default vs tuned kernel, timed interleaved on the same inputs: (default_us, tuned_us)."""
    dev = tvm.cpu()
    default_func, _ = schedule_func(task.func, task.kind, lanes)
    mods = {"default": _compile_kernel(workload_mod(default_func), target)}
    if tuned_func is not None:
        mods["tuned"] = _compile_kernel(workload_mod(tuned_func), target)
    shapes = [(tuple(int(d) for d in p.shape), str(p.dtype)) for p in task.func.params]
    args = _random_args(shapes, dev)
    times: dict[str, list[float]] = {k: [] for k in mods}
    for _ in range(rounds):
        for k, m in mods.items():
            times[k].append(float(np.median(_time_module(m, args, number=2, repeat=3))))
    med = {k: float(np.median(v)) * 1e6 for k, v in times.items()}
    return med["default"], med.get("tuned")


def tune_module(mod: tvm.IRModule, target: dict, db_dir: str, *, budget_s: float,
                trials: int | None = None, max_kernels: int | None = None,
                seed: int = 0, log: Callable[[str], None] | None = None) -> TuneResult:
    """Tune ``mod``'s heaviest kernels for ``target`` within ``budget_s`` seconds.

    Records go to the target's JSON database under ``db_dir``; the sidecar gets both the
    default and the tuned time of every task, measured here side by side.
    """
    ms = _ms()
    log = log or (lambda s: print(f"llmc tune: {s}", file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    tasks, skipped = extract_tasks(mod, max_kernels)
    out_dir = os.path.join(db_dir, target_key(target))
    os.makedirs(out_dir, exist_ok=True)
    result = TuneResult(out_dir, 0.0, 0, skipped=skipped)
    if not tasks:
        log("no static matmul kernels to tune" + (f" ({'; '.join(skipped)})" if skipped else ""))
        result.seconds = time.perf_counter() - t0
        return result
    tgt = tvm.target.Target(target)
    lanes = vector_lanes(target)
    # time left for the search after the final default-vs-tuned comparison (~1-2 s per task)
    search_s = max(1.0, budget_s - 2.0 * len(tasks))
    per_iter = max(2, min(16, int(search_s / 4)))  # a short budget measures small batches
    total = trials if trials is not None else 100000
    database = ms.database.JSONDatabase(work_dir=out_dir, allow_missing=True)
    builder, runner = _make_builder_runner(t0 + search_s)
    cost = "xgb" if _has_xgboost() else "random"
    log(f"{len(tasks)} kernels, budget {budget_s:.0f} s" +
        (f", {trials} trials" if trials is not None else "") + f", cost model {cost}; "
        f"database {out_dir}")
    with _no_tensor_intrin():
        contexts = [ms.TuneContext(
            workload_mod(t.func), target=tgt, space_generator=_space_for(t, lanes),
            search_strategy=ms.search_strategy.EvolutionarySearch(
                population_size=64, init_min_unmeasured=16, genetic_num_iters=2),
            task_name=t.name, rand_state=seed + i, num_threads=os.cpu_count() or 1,
        ).clone() for i, t in enumerate(tasks)]
        found_at: dict[int, float] = {}
        budget = _budget_callback(tasks, t0 + search_s, trials, t0, found_at)
        callbacks = [ms.measure_callback.AddToDatabase(), ms.measure_callback.UpdateCostModel(),
                     budget]
        ms.tune_tasks(
            tasks=contexts, task_weights=[float(t.flops * t.count) for t in tasks],
            work_dir=out_dir, max_trials_global=total,
            max_trials_per_task=max(1, -(-total // len(tasks))) if trials is not None else total,
            num_trials_per_iter=min(per_iter, total), builder=builder, runner=runner,
            database=database,
            cost_model=ms.cost_model.CostModel.create(cost, num_tuning_cores=os.cpu_count() or 1)
            if cost == "xgb" else ms.cost_model.CostModel.create("random"),
            measure_callbacks=callbacks, task_scheduler="round-robin")
    budget.close()
    _BUILT.clear()
    record_results(result, tasks, database, tgt, lanes, found_at)
    result.seconds = time.perf_counter() - t0
    return result


def record_results(result: TuneResult, tasks: list[TuneTask], database, tgt, lanes: int,
                   found_at: dict[int, float] | None = None) -> None:
    """Time each task's best record against the default, interleaved, and write the sidecar
    (also usable on its own to re-measure an existing database)."""
    found_at = found_at or {}
    out_dir = result.db_dir
    sidecar_path = os.path.join(out_dir, SIDECAR)
    sidecar = _load_sidecar(sidecar_path)
    n_trials = 0
    for ti, t in enumerate(tasks):
        wmod = workload_mod(t.func)
        n = len(database.get_top_k(database.commit_workload(wmod), 100000)) \
            if database.has_workload(wmod) else 0
        n_trials += n
        sch = database.query_schedule(wmod, tgt, workload_name="main") if n else None
        tuned_func = sch.mod["main"] if sch is not None else None
        default_us, tuned_us = _compare(t, tuned_func, tgt, lanes)
        row = {"kernel": t.name, "kind": t.kind, "count": t.count, "flops": t.flops,
               "default_us": default_us, "tuned_us": tuned_us, "trials": n,
               "default_gflops": t.flops / default_us / 1e3,
               "tuned_gflops": t.flops / tuned_us / 1e3 if tuned_us else None,
               "use_tuned": tuned_wins(default_us, tuned_us),
               "best_found_s": round(found_at[ti], 1) if ti in found_at else None,
               "target": str(tgt), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime())}
        sidecar[t.key] = row
        result.rows.append(row)
    _save_sidecar(sidecar_path, sidecar)
    result.trials = n_trials


def _has_xgboost() -> bool:
    try:
        import xgboost  # noqa: F401
        return True
    except ImportError:
        return False


def model_module(model, *, mcpu: str | None = None, input_shapes: dict | None = None,
                 opt_level: str = "O3") -> tvm.IRModule:
    """``model`` imported and optimized as `llmc compile` would: the module whose (packed)
    kernels are tuned and later looked up."""
    from llmc.frontend import import_model
    from llmc.pipeline import CompileOptions, _optimize

    from ..relax_builder import build_relax

    graph = import_model(model, input_shapes=input_shapes)
    graph.verify()
    try:  # the same pass context as compile_graph (the layout pass is x86-specific)
        from llmc.passes.layout import layout_options
        ctx = layout_options("x86")
    except ImportError:
        ctx = contextlib.nullcontext()
    with ctx:
        graph, _, _ = _optimize(graph, CompileOptions(target="x86", mcpu=mcpu, opt_level=opt_level))
    return build_relax(graph).mod


def tune_model(model, db_dir: str, *, budget: str | float = "10m", trials: int | None = None,
               mcpu: str | None = None, input_shapes: dict | None = None,
               opt_level: str = "O3", max_kernels: int | None = None, seed: int = 0,
               log: Callable[[str], None] | None = None) -> TuneResult:
    """Import ``model`` as `llmc compile` would (same passes, same packed kernels) and tune it."""
    mod = model_module(model, mcpu=mcpu, input_shapes=input_shapes, opt_level=opt_level)
    return tune_module(mod, host_target(mcpu), db_dir, budget_s=parse_budget(budget),
                       trials=trials, max_kernels=max_kernels, seed=seed, log=log)
