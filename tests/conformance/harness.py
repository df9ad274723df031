"""ONNX backend node-test conformance harness for llmc (and peers, for comparison).

Why it exists: the ONNX backend node suite (1884 single-op cases, incl. ``_expanded`` function
bodies) is the broadest public check of op semantics. onnx >= 1.23 ships no data files, so the
cases are built in memory with ``onnx.backend.test.loader.load_model_tests(kind="node")`` after
seeding numpy (several generators draw unseeded random inputs).

Each case runs through an *executor* (``run(model, inputs) -> {output name: array}``) and is
classified as passed / failed (wrong numbers) / unsupported (UnsupportedOpError, or the peer's
NOT_IMPLEMENTED) / error (any other exception).

    python -m tests.conformance.harness --executor reference|x86|onnxruntime \
        [--ops Add,MatMul] [--cases REGEX] [--json out.json] [--failures]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

RTOL = 1e-3
ATOL = 1e-5
STATUSES = ("passed", "failed", "unsupported", "error")

Executor = Callable[[onnx.ModelProto, Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


class Unsupported(Exception):
    """Raised by an executor when the case uses something it does not implement."""


@dataclass
class CaseResult:
    name: str
    op: str
    status: str
    detail: str = ""
    seconds: float = 0.0


# ============================================================================ cases
@functools.lru_cache(maxsize=1)
def load_cases() -> tuple:
    """All node test cases, built in memory with a fixed numpy seed (cached per process)."""
    from onnx.backend.test.loader import load_model_tests

    state = np.random.get_state()
    np.random.seed(0)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            cases = load_model_tests(kind="node")
    finally:
        np.random.set_state(state)
    return tuple(cases)


def _main_op(model: onnx.ModelProto) -> str:
    ops = [n.op_type for n in model.graph.node if n.op_type != "Constant"]
    return ops[-1] if ops else "Constant"


@functools.lru_cache(maxsize=1)
def case_ops() -> dict[str, str]:
    """Case name -> the ONNX op it tests (``_expanded`` cases: the op their base case tests)."""
    cases = load_cases()
    ops = {c.name: _main_op(c.model) for c in cases if "_expanded" not in c.name}
    out = {}
    for c in cases:
        if "_expanded" in c.name:
            base = c.name.replace("_expanded", "", 1)
            out[c.name] = ops.get(base, _main_op(c.model))
        else:
            out[c.name] = ops[c.name]
    return out


def select_cases(ops: Iterable[str] | None = None, pattern: str | None = None) -> list:
    """Cases whose op is in ``ops`` (all if None) and whose name matches ``pattern``."""
    wanted = set(ops) if ops else None
    names = case_ops()
    rx = re.compile(pattern) if pattern else None
    return [c for c in load_cases()
            if (wanted is None or names[c.name] in wanted) and (rx is None or rx.search(c.name))]


# ============================================================================ executors
#: Marker in llmc's messages for arguments it needs at import (axes, shapes) but got as inputs.
_RUN_TIME = "run time"


def freeze_inputs(model: onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose integer inputs are initializers holding ``feed``'s values.

    Why: many node tests pass axes, shapes or pads as graph *inputs*; an AOT compiler needs
    them at compile time (a user would bake them in), so ``freeze=True`` retries such cases
    with those inputs frozen and says so in the result's detail.
    """
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    frozen = [n for n, v in feed.items() if np.asarray(v).dtype.kind in "iu"]
    keep = [i for i in m.graph.input if i.name not in frozen]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for n in frozen:
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(feed[n]), n))
    return m


def _llmc_executor(build: Callable, freeze: bool) -> Executor:
    from llmc.errors import UnsupportedOpError

    def run(model, inputs):
        try:
            return build(model)(inputs)
        except UnsupportedOpError as exc:
            if not (freeze and _RUN_TIME in str(exc)):
                raise Unsupported(str(exc)) from None
        frozen = freeze_inputs(model, inputs)
        rest = {k: v for k, v in inputs.items() if k in {i.name for i in frozen.graph.input}}
        try:
            out = build(frozen)(rest)
        except UnsupportedOpError as exc:
            raise Unsupported(str(exc)) from None
        run.frozen = True
        return out
    return run


def reference_executor(freeze: bool = False) -> Executor:
    """import_onnx + llmc's numpy reference interpreter."""
    from llmc.frontends.onnx import import_onnx
    from llmc.interpreter import run_reference

    def build(model):
        graph = import_onnx(model)
        return lambda inputs: run_reference(graph, inputs)
    return _llmc_executor(build, freeze)


def x86_executor(freeze: bool = False) -> Executor:
    """The public API: ``llmc.compile(model, target="x86").run(inputs)``.

    ``LLMC_CONFORMANCE_OPT`` (O0..O3, default O3) picks the optimization level, so the
    totals at -O0 and -O3 can be compared.
    """
    import llmc

    level = os.environ.get("LLMC_CONFORMANCE_OPT", "O3")

    def build(model):
        art = llmc.compile(model, target="x86", opt_level=level)
        return lambda inputs: art.run(dict(inputs))
    return _llmc_executor(build, freeze)


def onnxruntime_executor(freeze: bool = False) -> Executor:
    """ONNX Runtime on CPU, for the comparison figure."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1

    def run(model, inputs):
        try:
            sess = ort.InferenceSession(model.SerializeToString(), opts,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:
            if _ort_unsupported(exc):
                raise Unsupported(str(exc)[:300]) from None
            raise
        names = [o.name for o in sess.get_outputs()]
        try:
            return dict(zip(names, sess.run(names, dict(inputs))))
        except Exception as exc:
            if _ort_unsupported(exc):
                raise Unsupported(str(exc)[:300]) from None
            raise
    return run


_ORT_UNSUPPORTED = ("NOT_IMPLEMENTED", "is not a registered function/op",
                    "can't be converted to MLDataType", "is under development")


def _ort_unsupported(exc: Exception) -> bool:
    """ONNX Runtime's ways of saying 'not implemented' (op, opset, or input dtype)."""
    return "NotImplemented" in type(exc).__name__ or any(m in str(exc) for m in _ORT_UNSUPPORTED)



EXECUTORS: dict[str, Callable[..., Executor]] = {
    "reference": reference_executor,
    "x86": x86_executor,
    "onnxruntime": onnxruntime_executor,
}


# ============================================================================ running
def _graph_inputs(model: onnx.ModelProto) -> list[str]:
    inits = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def compare(expected: np.ndarray, got: np.ndarray, rtol: float, atol: float) -> str:
    """'' if ``got`` matches ``expected``, else a short description of the mismatch."""
    got = np.asarray(got)
    if isinstance(expected, np.generic):
        expected = np.asarray(expected)
    if not isinstance(expected, np.ndarray):
        return f"expected a {type(expected).__name__}, not a tensor"
    if got.shape != expected.shape:
        return f"shape {list(got.shape)} != expected {list(expected.shape)}"
    if got.dtype != expected.dtype:
        return f"dtype {got.dtype} != expected {expected.dtype}"
    if expected.dtype.kind in "biuO" or expected.dtype == np.bool_:
        bad = int(np.sum(got != expected))
        return f"{bad} of {expected.size} elements differ" if bad else ""
    e, g = expected.astype(np.float64), got.astype(np.float64)
    ok = np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    if ok.all():
        return ""
    err = np.abs(g - e)[~ok]
    return f"{int((~ok).sum())} of {expected.size} elements off (max abs err {np.max(err):.3g})"


def run_case(case, execute: Executor, op: str = "") -> CaseResult:
    """Run every data set of one case and classify the outcome."""
    t0 = time.perf_counter()
    rtol, atol = max(RTOL, case.rtol), max(ATOL, case.atol)
    in_names = _graph_inputs(case.model)
    out_names = [o.name for o in case.model.graph.output]
    execute.frozen = False
    try:
        for inputs, expected in case.data_sets:
            if len(inputs) != len(in_names):
                raise Unsupported(f"case feeds {len(inputs)} inputs, model declares "
                                  f"{len(in_names)}")
            feed = {n: np.asarray(v) if isinstance(v, np.generic) else v
                    for n, v in zip(in_names, inputs)}
            if any(not isinstance(v, np.ndarray) for v in feed.values()):
                raise Unsupported("sequence, optional or exotic-dtype inputs")
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                outs = execute(case.model, feed)
            for name, exp in zip(out_names, expected):
                if name not in outs:
                    return CaseResult(case.name, op, "failed", f"output {name!r} missing",
                                      time.perf_counter() - t0)
                why = compare(exp, outs[name], rtol, atol)
                if why:
                    return CaseResult(case.name, op, "failed", f"{name}: {why}",
                                      time.perf_counter() - t0)
    except Unsupported as exc:
        return CaseResult(case.name, op, "unsupported", str(exc)[:300], time.perf_counter() - t0)
    except Exception as exc:  # the harness must classify, never crash
        return CaseResult(case.name, op, "error", f"{type(exc).__name__}: {str(exc)[:300]}",
                          time.perf_counter() - t0)
    note = "integer inputs frozen as constants" if getattr(execute, "frozen", False) else ""
    return CaseResult(case.name, op, "passed", note, time.perf_counter() - t0)


def run_suite(executor: str = "reference", ops: Sequence[str] | None = None,
              pattern: str | None = None, progress: bool = False,
              freeze: bool = False) -> list[CaseResult]:
    """Run the selected cases through the named executor (``freeze``: see freeze_inputs)."""
    execute = EXECUTORS[executor](freeze)
    names = case_ops()
    results = []
    cases = select_cases(ops, pattern)
    for k, case in enumerate(cases):
        results.append(run_case(case, execute, names[case.name]))
        if progress and (k + 1) % 100 == 0:
            print(f"  {k + 1}/{len(cases)} cases", file=sys.stderr, flush=True)
    return results


def totals(results: Sequence[CaseResult]) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for r in results:
        out[r.status] += 1
    out["total"] = len(results)
    return out


def format_table(results: Sequence[CaseResult], executor: str) -> str:
    """One row per ONNX op type with its counts, then the totals."""
    per_op: dict[str, dict[str, int]] = {}
    for r in results:
        row = per_op.setdefault(r.op, {s: 0 for s in STATUSES})
        row[r.status] += 1
    width = max([len(op) for op in per_op] + [8])
    head = f"{'op':<{width}}  " + "  ".join(f"{s:>11}" for s in STATUSES) + f"  {'total':>6}"
    lines = [f"ONNX node conformance, executor={executor}", head, "-" * len(head)]
    for op in sorted(per_op):
        row = per_op[op]
        lines.append(f"{op:<{width}}  " + "  ".join(f"{row[s]:>11}" for s in STATUSES)
                     + f"  {sum(row.values()):>6}")
    t = totals(results)
    lines.append("-" * len(head))
    lines.append(f"{'TOTAL':<{width}}  " + "  ".join(f"{t[s]:>11}" for s in STATUSES)
                 + f"  {t['total']:>6}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.conformance.harness",
                                description="Run the ONNX backend node tests through llmc.")
    p.add_argument("--executor", choices=sorted(EXECUTORS), default="reference")
    p.add_argument("--ops", default="", help="comma-separated ONNX op types (default: all)")
    p.add_argument("--cases", default=None, help="regex on case names")
    p.add_argument("--json", default=None, help="write per-case results and totals here")
    p.add_argument("--failures", action="store_true", help="list non-passing cases with reasons")
    p.add_argument("--freeze", action="store_true",
                   help="retry cases refused for run-time axes/shapes with integer inputs frozen")
    args = p.parse_args(argv)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] or None
    t0 = time.perf_counter()
    results = run_suite(args.executor, ops, args.cases, progress=True, freeze=args.freeze)
    print(format_table(results, args.executor + (" (frozen int inputs)" if args.freeze else "")))
    n_frozen = sum(1 for r in results if r.status == "passed" and r.detail)
    if n_frozen:
        print(f"{n_frozen} passed cases needed their integer inputs frozen as constants")
    print(f"({time.perf_counter() - t0:.1f} s)")
    if args.failures:
        for r in results:
            if r.status != "passed":
                print(f"{r.status:<11} {r.name}: {r.detail}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"executor": args.executor, "freeze": args.freeze, "totals": totals(results),
                       "cases": [asdict(r) for r in results]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
